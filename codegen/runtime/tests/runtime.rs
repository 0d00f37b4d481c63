//! Tests of what generated servers call at run time, through the crate's public API:
//! parameter coercion, body limits and content types, validation with every violation
//! reported at once in a stable order, problem+json rendering, and the security helpers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use codegen_runtime::{
    Body, Credential, CredentialIn, Input, Limits, Location, MethodNotAllowed, Operation,
    OperationSlot, Param, RejectedRequest, Scalar, Unauthenticated, Validators, Violation,
    announce_operation, credential, extract, method_not_allowed, problem_response,
};
use poem::error::ResponseError;
use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, Request, Route};
use serde::Deserialize;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// Shaped like the generated `request_schemas.json`: shared `definitions`, and per
/// operation id one object schema per parameter location plus the body's schema.
const SCHEMAS: &str = r##"{
  "definitions": {
    "Item": {
      "type": "object",
      "required": ["name"],
      "properties": {
        "name": {"type": "string", "minLength": 1},
        "qty": {"type": "integer", "minimum": 1}
      },
      "additionalProperties": false
    },
    "Order": {
      "type": "object",
      "required": ["customer", "items"],
      "properties": {
        "customer": {
          "type": "object",
          "required": ["email"],
          "properties": {
            "email": {"type": "string"},
            "password": {"type": "string", "minLength": 20, "pattern": "^[0-9]+$"}
          }
        },
        "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/Item"}},
        "kind": {"enum": ["retail", "wholesale"]},
        "when": {"type": "string", "format": "date"},
        "ref": {"type": "string", "format": "uuid"}
      },
      "additionalProperties": false
    }
  },
  "operations": {
    "coerce": {
      "path": {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "integer", "minimum": 1}}
      },
      "query": {
        "type": "object",
        "required": ["name"],
        "properties": {
          "limit": {"type": "integer", "maximum": 100},
          "ratio": {"type": "number"},
          "flag": {"type": "boolean"},
          "name": {"type": "string"},
          "tags": {"type": "array", "items": {"type": "string"}},
          "ids": {"type": "array", "items": {"type": "integer"}}
        }
      },
      "header": {
        "type": "object",
        "properties": {"x-count": {"type": "integer"}}
      }
    },
    "createOrder": {
      "path": {
        "type": "object",
        "required": ["shop"],
        "properties": {"shop": {"type": "string", "minLength": 3}}
      },
      "query": {
        "type": "object",
        "properties": {"dryRun": {"type": "boolean"}, "limit": {"type": "integer"}}
      },
      "header": {
        "type": "object",
        "properties": {"x-count": {"type": "integer"}}
      },
      "body": {"$ref": "#/definitions/Order"}
    },
    "jsonBlob": {"body": {"type": "object"}},
    "upload": {},
    "optionalNote": {
      "body": {
        "type": "object",
        "properties": {"note": {"type": "string", "maxLength": 5}},
        "additionalProperties": false
      }
    },
    "narrow": {
      "query": {
        "type": "object",
        "properties": {"limit": {"type": "integer", "format": "int32", "maximum": 100}}
      }
    }
  }
}"##;

static VALIDATORS: LazyLock<Validators> = LazyLock::new(|| Validators::compile(SCHEMAS));

const LIMITS: Limits = Limits {
    max_body_bytes: 512,
    max_binary_body_bytes: 2048,
};

const fn param(name: &'static str, location: Location, scalar: Scalar, array: bool) -> Param {
    Param {
        name,
        location,
        scalar,
        array,
    }
}

static COERCE: Operation = Operation {
    id: "coerce",
    params: &[
        param("id", Location::Path, Scalar::Integer, false),
        param("limit", Location::Query, Scalar::Integer, false),
        param("ratio", Location::Query, Scalar::Number, false),
        param("flag", Location::Query, Scalar::Boolean, false),
        param("name", Location::Query, Scalar::String, false),
        param("tags", Location::Query, Scalar::String, true),
        param("ids", Location::Query, Scalar::Integer, true),
        param("x-count", Location::Header, Scalar::Integer, false),
    ],
    body: None,
};

static CREATE_ORDER: Operation = Operation {
    id: "createOrder",
    params: &[
        param("shop", Location::Path, Scalar::String, false),
        param("dryRun", Location::Query, Scalar::Boolean, false),
        param("limit", Location::Query, Scalar::Integer, false),
        param("x-count", Location::Header, Scalar::Integer, false),
    ],
    body: Some(Body {
        media_type: "application/json",
        json: true,
        required: true,
    }),
};

static JSON_BLOB: Operation = Operation {
    id: "jsonBlob",
    params: &[],
    body: Some(Body {
        media_type: "application/json",
        json: true,
        required: true,
    }),
};

static UPLOAD: Operation = Operation {
    id: "upload",
    params: &[],
    body: Some(Body {
        media_type: "image/png",
        json: false,
        required: true,
    }),
};

static OPTIONAL_UPLOAD: Operation = Operation {
    id: "upload",
    params: &[],
    body: Some(Body {
        media_type: "image/png",
        json: false,
        required: false,
    }),
};

static OPTIONAL_NOTE: Operation = Operation {
    id: "optionalNote",
    params: &[],
    body: Some(Body {
        media_type: "application/json",
        json: true,
        required: false,
    }),
};

static NARROW: Operation = Operation {
    id: "narrow",
    params: &[param("limit", Location::Query, Scalar::Integer, false)],
    body: None,
};

/// Runs `request` through a `Route` with `pattern`, so that its path parameters are
/// matched the way a generated server's are, and hands the routed request back.
async fn routed(pattern: &str, request: Request) -> Request {
    let slot: Arc<Mutex<Option<Request>>> = Arc::default();
    let stash = Arc::clone(&slot);
    let route = Route::new().at(
        pattern,
        poem::endpoint::make_sync(move |request: Request| {
            *stash.lock().expect("the slot is not poisoned") = Some(request);
        }),
    );
    route
        .call(request)
        .await
        .expect("the request matches the pattern");
    let routed = slot.lock().expect("the slot is not poisoned").take();
    routed.expect("the endpoint ran")
}

async fn run(request: &mut Request, operation: &Operation) -> poem::Result<Input> {
    extract(request, &VALIDATORS, operation, LIMITS).await
}

/// The `RejectedRequest` an extraction failed with.
fn refusal(result: poem::Result<Input>) -> RejectedRequest {
    let error = result.expect_err("the request is rejected");
    let rejected = error
        .downcast_ref::<RejectedRequest>()
        .expect("the error is a RejectedRequest");
    RejectedRequest {
        status: rejected.status,
        detail: rejected.detail.clone(),
        violations: rejected.violations.clone(),
    }
}

fn places(rejected: &RejectedRequest) -> Vec<(Location, &str)> {
    rejected
        .violations
        .iter()
        .map(|v| (v.location, v.pointer.as_str()))
        .collect()
}

fn message_at<'r>(rejected: &'r RejectedRequest, location: Location, pointer: &str) -> &'r str {
    rejected
        .violations
        .iter()
        .find(|v| v.location == location && v.pointer == pointer)
        .map(|v| v.message.as_str())
        .unwrap_or_else(|| panic!("no violation at {location:?} {pointer}"))
}

fn json_request(uri: &str, body: &str) -> Request {
    Request::builder()
        .method(Method::POST)
        .uri(uri.parse().expect("a valid URI"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len().to_string())
        .body(body.to_owned())
}

/// A JSON object of exactly `len` bytes.
fn json_of_len(len: usize) -> String {
    let body = format!(r#"{{"k":"{}"}}"#, "a".repeat(len - 8));
    assert_eq!(body.len(), len);
    body
}

/// An endless body of 16-byte chunks, counting the chunks read from it.
fn endless_body(pulled: &Arc<AtomicUsize>) -> poem::Body {
    let pulled = Arc::clone(pulled);
    poem::Body::from_bytes_stream(futures::stream::repeat_with(move || {
        pulled.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(vec![b' '; 16])
    }))
}

/// A streamed body of `chunks`, with no length known in advance.
fn streamed_body(chunks: Vec<Vec<u8>>) -> poem::Body {
    poem::Body::from_bytes_stream(futures::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

async fn response_json(response: poem::Response) -> Value {
    let text = response
        .into_body()
        .into_string()
        .await
        .expect("the body is text");
    serde_json::from_str(&text).expect("the body is JSON")
}

// ---------------------------------------------------------------------------------------
// (1) Parameter coercion
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, PartialEq)]
struct CoerceParams {
    id: i64,
    limit: Option<i64>,
    ratio: Option<f64>,
    flag: Option<bool>,
    name: String,
    tags: Option<Vec<String>>,
    ids: Option<Vec<u64>>,
    #[serde(rename = "x-count")]
    x_count: Option<i32>,
}

#[tokio::test]
async fn parameters_are_coerced_to_their_declared_scalar_types() {
    let request = Request::builder()
        .uri(
            "/items/42?limit=7&ratio=2.5&flag=true&name=a+b%26c&tags=x&tags=y,z&ids=1&ids=18446744073709551615"
                .parse()
                .expect("a valid URI"),
        )
        .header("x-count", "3")
        .finish();
    let mut request = routed("/items/:id", request).await;
    let mut input = run(&mut request, &COERCE)
        .await
        .expect("the parameters are valid");
    let params: Value = input.params().expect("the parameters are an object");
    assert_eq!(
        params,
        json!({
            "id": 42,
            "limit": 7,
            "ratio": 2.5,
            "flag": true,
            "name": "a b&c",
            "tags": ["x", "y,z"],
            "ids": [1, u64::MAX],
            "x-count": 3,
        })
    );
    assert!(params["id"].is_i64(), "a path integer is a JSON integer");
    assert!(params["ratio"].is_f64());
    assert!(params["flag"].is_boolean());
}

#[tokio::test]
async fn coerced_parameters_deserialize_into_the_params_struct() {
    let request = Request::builder()
        .uri(
            "/items/7?name=n&flag=false&ratio=-1e3&limit=-9223372036854775808"
                .parse()
                .expect("a valid URI"),
        )
        .finish();
    let mut request = routed("/items/:id", request).await;
    let mut input = run(&mut request, &COERCE)
        .await
        .expect("the parameters are valid");
    let params: CoerceParams = input.params().expect("the params deserialize");
    assert_eq!(
        params,
        CoerceParams {
            id: 7,
            limit: Some(i64::MIN),
            ratio: Some(-1000.0),
            flag: Some(false),
            name: "n".to_owned(),
            tags: None,
            ids: None,
            x_count: None,
        }
    );
}

#[tokio::test]
async fn a_whole_number_is_a_valid_number_parameter() {
    let request = Request::builder()
        .uri("/items/1?name=n&ratio=3".parse().expect("a valid URI"))
        .finish();
    let mut request = routed("/items/:id", request).await;
    let mut input = run(&mut request, &COERCE).await.expect("3 is a number");
    let params: CoerceParams = input.params().expect("the params deserialize");
    assert_eq!(params.ratio, Some(3.0));
}

#[tokio::test]
async fn path_parameters_are_percent_decoded_strings() {
    let request = Request::builder()
        .uri("/shops/caf%C3%A9%20b".parse().expect("a valid URI"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"customer":{"email":"e"},"items":[{"name":"n"}]}"#);
    let mut request = routed("/shops/:shop", request).await;
    let mut input = run(&mut request, &CREATE_ORDER)
        .await
        .expect("the request is valid");
    let params: Value = input.params().expect("an object");
    assert_eq!(params, json!({"shop": "café b"}));
}

#[tokio::test]
async fn a_repeated_scalar_parameter_takes_its_first_value() {
    let request = Request::builder()
        .uri(
            "/items/1?name=first&name=second&limit=5&limit=nope"
                .parse()
                .expect("a valid URI"),
        )
        .finish();
    let mut request = routed("/items/:id", request).await;
    let mut input = run(&mut request, &COERCE)
        .await
        .expect("only the first values count");
    let params: CoerceParams = input.params().expect("the params deserialize");
    assert_eq!(params.name, "first");
    assert_eq!(params.limit, Some(5));
}

#[tokio::test]
async fn array_parameters_are_repeated_pairs_and_commas_are_not_separators() {
    let request = Request::builder()
        .uri(
            "/items/1?name=n&tags=a,b&ids=3"
                .parse()
                .expect("a valid URI"),
        )
        .finish();
    let mut request = routed("/items/:id", request).await;
    let mut input = run(&mut request, &COERCE).await.expect("valid parameters");
    let params: CoerceParams = input.params().expect("the params deserialize");
    assert_eq!(params.tags, Some(vec!["a,b".to_owned()]));
    assert_eq!(
        params.ids,
        Some(vec![3]),
        "a single value is a one-item array"
    );

    // `ids=1,2` is one item, and not an integer.
    let request = Request::builder()
        .uri("/items/1?name=n&ids=1,2".parse().expect("a valid URI"))
        .finish();
    let mut request = routed("/items/:id", request).await;
    let rejected = refusal(run(&mut request, &COERCE).await);
    assert_eq!(places(&rejected), [(Location::Query, "/ids/0")]);
}

#[tokio::test]
async fn values_that_do_not_convert_are_type_violations_at_their_pointers() {
    let request = Request::builder()
        .uri(
            "/items/abc?limit=ten&ratio=NaN&flag=TRUE&ids=1&ids=x&ids=2.5"
                .parse()
                .expect("a valid URI"),
        )
        .header("x-count", "3.5")
        .finish();
    let mut request = routed("/items/:id", request).await;
    let rejected = refusal(run(&mut request, &COERCE).await);
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        places(&rejected),
        [
            (Location::Path, "/id"),
            (Location::Query, "/flag"),
            (Location::Query, "/ids/1"),
            (Location::Query, "/ids/2"),
            (Location::Query, "/limit"),
            (Location::Query, "/name"),
            (Location::Query, "/ratio"),
            (Location::Header, "/x-count"),
        ]
    );
    assert_eq!(
        message_at(&rejected, Location::Path, "/id"),
        "must be of type integer"
    );
    assert_eq!(
        message_at(&rejected, Location::Query, "/limit"),
        "must be of type integer"
    );
    assert_eq!(
        message_at(&rejected, Location::Query, "/ratio"),
        "must be of type number"
    );
    assert_eq!(
        message_at(&rejected, Location::Query, "/flag"),
        "must be of type boolean"
    );
    assert_eq!(
        message_at(&rejected, Location::Query, "/name"),
        "is required"
    );
    assert_eq!(rejected.detail, "The request has 8 invalid fields.");
    for violation in &rejected.violations {
        for value in ["abc", "ten", "NaN", "TRUE", "2.5", "3.5"] {
            assert!(
                !violation.message.contains(value),
                "{violation:?} echoes {value}"
            );
        }
    }
}

#[tokio::test]
async fn numbers_out_of_range_and_non_finite_are_not_numbers() {
    for ratio in ["1e999", "inf", "-infinity", "0x10", ""] {
        let uri = format!("/items/1?name=n&ratio={ratio}");
        let request = Request::builder()
            .uri(uri.parse().expect("a valid URI"))
            .finish();
        let mut request = routed("/items/:id", request).await;
        let rejected = refusal(run(&mut request, &COERCE).await);
        assert_eq!(
            places(&rejected),
            [(Location::Query, "/ratio")],
            "ratio={ratio}"
        );
    }
}

#[tokio::test]
async fn integers_beyond_64_bits_and_fractions_are_not_integers() {
    for limit in ["18446744073709551616", "1.0", "1e2", " 1"] {
        let uri = format!("/items/1?name=n&limit={}", limit.replace(' ', "%20"));
        let request = Request::builder()
            .uri(uri.parse().expect("a valid URI"))
            .finish();
        let mut request = routed("/items/:id", request).await;
        let rejected = refusal(run(&mut request, &COERCE).await);
        assert_eq!(
            places(&rejected),
            [(Location::Query, "/limit")],
            "limit={limit}"
        );
    }
}

#[tokio::test]
async fn a_valid_type_can_still_break_the_schema() {
    let request = Request::builder()
        .uri("/items/0?name=n&limit=101".parse().expect("a valid URI"))
        .finish();
    let mut request = routed("/items/:id", request).await;
    let rejected = refusal(run(&mut request, &COERCE).await);
    assert_eq!(
        places(&rejected),
        [(Location::Path, "/id"), (Location::Query, "/limit")]
    );
    assert_eq!(
        message_at(&rejected, Location::Path, "/id"),
        "must be at least 1"
    );
    assert_eq!(
        message_at(&rejected, Location::Query, "/limit"),
        "must be at most 100"
    );
}

#[tokio::test]
async fn a_missing_required_parameter_is_a_400_naming_it() {
    let request = Request::builder()
        .uri("/items/5?limit=1".parse().expect("a valid URI"))
        .finish();
    let mut request = routed("/items/:id", request).await;
    let rejected = refusal(run(&mut request, &COERCE).await);
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(places(&rejected), [(Location::Query, "/name")]);
    assert_eq!(rejected.violations[0].message, "is required");
    assert_eq!(rejected.detail, "The request has 1 invalid field.");

    // A request that never went through a route has no path parameters at all.
    let mut request = Request::builder()
        .uri("/items/5?name=n".parse().expect("a valid URI"))
        .finish();
    let rejected = refusal(run(&mut request, &COERCE).await);
    assert_eq!(places(&rejected), [(Location::Path, "/id")]);
}

#[tokio::test]
async fn an_operation_without_schemas_accepts_any_parameters() {
    static UNKNOWN: Operation = Operation {
        id: "notInTheDocument",
        params: &[param("n", Location::Query, Scalar::Integer, false)],
        body: None,
    };
    let mut request = Request::builder()
        .uri("/?n=x".parse().expect("a valid URI"))
        .finish();
    let mut input = run(&mut request, &UNKNOWN)
        .await
        .expect("nothing to validate against");
    let params: Value = input.params().expect("an object");
    assert_eq!(params, json!({"n": "x"}), "unconverted text stays a string");
}

#[tokio::test]
async fn a_value_the_schema_allows_but_the_type_cannot_hold_is_a_400_without_the_value() {
    #[derive(Debug, Deserialize)]
    struct NarrowParams {
        #[allow(dead_code)]
        limit: Option<i32>,
    }
    // `format: int32` is not checked by the validator, so this passes validation ...
    let mut request = Request::builder()
        .uri("/?limit=-99999999999".parse().expect("a valid URI"))
        .finish();
    let mut input = run(&mut request, &NARROW)
        .await
        .expect("the schema allows it");
    // ... and is refused when it is deserialized.
    let error = input
        .params::<NarrowParams>()
        .expect_err("it does not fit an i32");
    let rejected = error
        .downcast_ref::<RejectedRequest>()
        .expect("a RejectedRequest");
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(rejected.violations.len(), 1);
    assert!(
        !rejected.violations[0].message.contains("99999999999"),
        "{:?} echoes the value",
        rejected.violations[0]
    );
    assert_eq!(rejected.violations[0].message, "must be i32");
}

// ---------------------------------------------------------------------------------------
// (2) Bodies: limits, content types, absence
// ---------------------------------------------------------------------------------------

fn assert_too_large(result: poem::Result<Input>, limit: usize) {
    let rejected = refusal(result);
    assert_eq!(rejected.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        rejected.detail,
        format!("The request body is larger than {limit} bytes.")
    );
    assert!(rejected.violations.is_empty());
}

#[tokio::test]
async fn a_json_body_exactly_at_the_limit_is_accepted() {
    let body = json_of_len(LIMITS.max_body_bytes);
    let mut request = json_request("/blob", &body);
    let mut input = run(&mut request, &JSON_BLOB)
        .await
        .expect("the body is at the limit");
    let json: Value = input.json_body().expect("an object");
    assert_eq!(
        json["k"].as_str().map(str::len),
        Some(LIMITS.max_body_bytes - 8)
    );
}

#[tokio::test]
async fn a_json_body_over_the_limit_is_a_413_by_its_content_length() {
    let body = json_of_len(LIMITS.max_body_bytes + 1);
    let mut request = json_request("/blob", &body);
    assert_too_large(run(&mut request, &JSON_BLOB).await, LIMITS.max_body_bytes);
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_any_of_the_body_is_read() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "1000000")
        .body(endless_body(&pulled));
    let result = tokio::time::timeout(Duration::from_secs(10), run(&mut request, &JSON_BLOB))
        .await
        .expect("the endless body is not read");
    assert_too_large(result, LIMITS.max_body_bytes);
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_streamed_body_without_content_length_is_cut_off_at_the_limit() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(endless_body(&pulled));
    let result = tokio::time::timeout(Duration::from_secs(10), run(&mut request, &JSON_BLOB))
        .await
        .expect("the endless body is not read in full");
    assert_too_large(result, LIMITS.max_body_bytes);
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled <= LIMITS.max_body_bytes / 16 + 2,
        "{pulled} chunks read"
    );
}

#[tokio::test]
async fn a_streamed_body_without_any_length_header_is_limited_too() {
    // As a decompressed (or HTTP/2) body arrives: no Content-Length, no Transfer-Encoding.
    let body = json_of_len(LIMITS.max_body_bytes + 1).into_bytes();
    let chunks = body.chunks(10).map(<[u8]>::to_vec).collect();
    let mut request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(streamed_body(chunks));
    assert_too_large(run(&mut request, &JSON_BLOB).await, LIMITS.max_body_bytes);

    let body = json_of_len(LIMITS.max_body_bytes).into_bytes();
    let chunks = body.chunks(10).map(<[u8]>::to_vec).collect();
    let mut request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(streamed_body(chunks));
    run(&mut request, &JSON_BLOB)
        .await
        .expect("a streamed body at the limit is accepted");
}

#[tokio::test]
async fn a_content_length_smaller_than_the_body_does_not_get_past_the_limit() {
    // E.g. the compressed length left on a body that decompresses to much more.
    let mut request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "10")
        .body(json_of_len(LIMITS.max_body_bytes * 4));
    assert_too_large(run(&mut request, &JSON_BLOB).await, LIMITS.max_body_bytes);
}

#[tokio::test]
async fn a_binary_body_has_its_own_limit() {
    let at_limit = vec![7u8; LIMITS.max_binary_body_bytes];
    let mut request = Request::builder()
        .method(Method::PUT)
        .header(header::CONTENT_TYPE, "image/png")
        .header(header::CONTENT_LENGTH, at_limit.len().to_string())
        .body(at_limit.clone());
    let mut input = run(&mut request, &UPLOAD)
        .await
        .expect("a binary body at its limit, over the JSON limit, is accepted");
    assert_eq!(input.bytes_body(), at_limit);

    let over = vec![7u8; LIMITS.max_binary_body_bytes + 1];
    let mut request = Request::builder()
        .method(Method::PUT)
        .header(header::CONTENT_TYPE, "image/png")
        .header(header::CONTENT_LENGTH, over.len().to_string())
        .body(over.clone());
    assert_too_large(
        run(&mut request, &UPLOAD).await,
        LIMITS.max_binary_body_bytes,
    );

    let mut request = Request::builder()
        .method(Method::PUT)
        .header(header::CONTENT_TYPE, "image/png")
        .body(streamed_body(vec![over; 3]));
    assert_too_large(
        run(&mut request, &UPLOAD).await,
        LIMITS.max_binary_body_bytes,
    );
}

#[tokio::test]
async fn a_json_body_between_the_two_limits_is_too_large() {
    let body = json_of_len(LIMITS.max_binary_body_bytes - 1);
    let mut request = json_request("/blob", &body);
    assert_too_large(run(&mut request, &JSON_BLOB).await, LIMITS.max_body_bytes);
}

#[tokio::test]
async fn a_body_of_the_wrong_content_type_is_a_415() {
    for content_type in [
        "text/plain",
        "application/jsonx",
        "application/json-patch+json",
    ] {
        let mut request = Request::builder()
            .method(Method::POST)
            .header(header::CONTENT_TYPE, content_type)
            .body("{}");
        let rejected = refusal(run(&mut request, &JSON_BLOB).await);
        assert_eq!(
            rejected.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        assert_eq!(rejected.detail, "Expected a body of type application/json.");
    }

    // A body without a content type.
    let mut request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_LENGTH, "2")
        .body("{}");
    let rejected = refusal(run(&mut request, &JSON_BLOB).await);
    assert_eq!(rejected.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A chunked body without a content type.
    let mut request = Request::builder()
        .method(Method::POST)
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(streamed_body(vec![b"{}".to_vec()]));
    let rejected = refusal(run(&mut request, &JSON_BLOB).await);
    assert_eq!(rejected.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Binary bodies are checked the same way.
    let mut request = Request::builder()
        .method(Method::PUT)
        .header(header::CONTENT_TYPE, "image/jpeg")
        .body(vec![1u8, 2, 3]);
    let rejected = refusal(run(&mut request, &UPLOAD).await);
    assert_eq!(rejected.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(rejected.detail, "Expected a body of type image/png.");
}

#[tokio::test]
async fn a_content_type_with_parameters_or_in_another_case_matches() {
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON",
        " application/json ;charset=UTF-8",
    ] {
        let mut request = Request::builder()
            .method(Method::POST)
            .header(header::CONTENT_TYPE, content_type)
            .body(r#"{"a":1}"#);
        let mut input = run(&mut request, &JSON_BLOB)
            .await
            .unwrap_or_else(|error| panic!("{content_type} is refused: {error}"));
        assert_eq!(
            input.json_body::<Value>().expect("the body"),
            json!({"a": 1}),
            "{content_type}: the body is read as JSON"
        );
    }
}

#[tokio::test]
async fn an_absent_optional_body_is_fine() {
    // No body at all.
    let mut request = Request::builder().method(Method::POST).finish();
    let mut input = run(&mut request, &OPTIONAL_NOTE)
        .await
        .expect("the body is optional");
    let body: Option<Value> = input.optional_json_body().expect("no body");
    assert_eq!(body, None);

    // A content type but an empty body.
    let mut request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "0")
        .finish();
    let mut input = run(&mut request, &OPTIONAL_NOTE)
        .await
        .expect("an empty JSON body is no body");
    let body: Option<Value> = input.optional_json_body().expect("no body");
    assert_eq!(body, None);

    // A present optional body is validated and returned.
    let mut request = json_request("/note", r#"{"note":"hi"}"#);
    let mut input = run(&mut request, &OPTIONAL_NOTE)
        .await
        .expect("a valid body");
    let body: Option<Value> = input.optional_json_body().expect("a body");
    assert_eq!(body, Some(json!({"note": "hi"})));

    // An absent optional binary body.
    let mut request = Request::builder().method(Method::PUT).finish();
    let mut input = run(&mut request, &OPTIONAL_UPLOAD)
        .await
        .expect("the upload is optional");
    assert_eq!(input.optional_bytes_body(), None);
}

#[tokio::test]
async fn an_absent_required_body_is_a_400_at_the_body_root() {
    let mut request = Request::builder().method(Method::POST).finish();
    let rejected = refusal(run(&mut request, &JSON_BLOB).await);
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(places(&rejected), [(Location::Body, "")]);
    assert!(rejected.violations[0].message.contains("application/json"));

    let mut request = Request::builder().method(Method::PUT).finish();
    let rejected = refusal(run(&mut request, &UPLOAD).await);
    assert_eq!(places(&rejected), [(Location::Body, "")]);
    assert!(rejected.violations[0].message.contains("image/png"));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400_that_does_not_echo_it() {
    let mut request = json_request("/blob", r#"{"password": "hunter2-secret"#);
    let rejected = refusal(run(&mut request, &JSON_BLOB).await);
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(places(&rejected), [(Location::Body, "")]);
    assert!(
        rejected.violations[0]
            .message
            .starts_with("is not valid JSON")
    );
    assert!(!rejected.violations[0].message.contains("hunter2"));
}

#[tokio::test]
async fn a_body_of_the_wrong_rust_type_is_a_400_that_does_not_echo_it() {
    #[derive(Debug, Deserialize)]
    struct Note {
        #[allow(dead_code)]
        note: u32,
    }
    let mut request = json_request("/note", r#"{"note":"pw123"}"#);
    let mut input = run(&mut request, &OPTIONAL_NOTE)
        .await
        .expect("the schema allows a short string");
    let error = input
        .optional_json_body::<Note>()
        .expect_err("a string is not a u32");
    let rejected = error
        .downcast_ref::<RejectedRequest>()
        .expect("a RejectedRequest");
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert!(
        !rejected.violations[0].message.contains("pw123"),
        "{:?} echoes the value",
        rejected.violations[0]
    );
    assert_eq!(rejected.violations[0].message, "must be u32");

    // A missing field names the field, which is not a value.
    #[derive(Debug, Deserialize)]
    struct Needs {
        #[allow(dead_code)]
        title: String,
    }
    let mut request = json_request("/note", r#"{"note":"pw123"}"#);
    let mut input = run(&mut request, &OPTIONAL_NOTE)
        .await
        .expect("the schema allows it");
    let error = input
        .json_body::<Needs>()
        .expect_err("the struct needs a title");
    let rejected = error
        .downcast_ref::<RejectedRequest>()
        .expect("a RejectedRequest");
    assert_eq!(rejected.violations[0].message, "missing field `title`");
}

#[tokio::test]
async fn parameters_are_reported_even_when_the_body_is_fine_and_vice_versa() {
    let request = json_request(
        "/shops/ab",
        r#"{"customer":{"email":"e"},"items":[{"name":"n"}]}"#,
    );
    let mut request = routed("/shops/:shop", request).await;
    let rejected = refusal(run(&mut request, &CREATE_ORDER).await);
    assert_eq!(places(&rejected), [(Location::Path, "/shop")]);

    let request = json_request("/shops/abc", r#"{"customer":{"email":"e"},"items":[]}"#);
    let mut request = routed("/shops/:shop", request).await;
    let rejected = refusal(run(&mut request, &CREATE_ORDER).await);
    assert_eq!(places(&rejected), [(Location::Body, "/items")]);
    assert_eq!(rejected.violations[0].message, "must have at least 1 items");
}

// ---------------------------------------------------------------------------------------
// (3) Violations: all at once, stable order, pointers, no echo
// ---------------------------------------------------------------------------------------

const BAD_ORDER: &str = r#"{
  "customer": {"password": "hunter2secret"},
  "items": [{"name": "a", "qty": 0}, {"extra": true}],
  "kind": "resale",
  "when": "2024-02-30",
  "ref": "not-a-uuid",
  "admin": true
}"#;

async fn bad_order_request() -> Request {
    let request = Request::builder()
        .method(Method::POST)
        .uri(
            "/shops/ab?limit=ten&dryRun=yes"
                .parse()
                .expect("a valid URI"),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-count", "many")
        .body(BAD_ORDER);
    routed("/shops/:shop", request).await
}

#[tokio::test]
async fn every_violation_is_reported_at_once_sorted_by_location_then_pointer() {
    let mut request = bad_order_request().await;
    let rejected = refusal(run(&mut request, &CREATE_ORDER).await);
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        places(&rejected),
        [
            (Location::Body, "/admin"),
            (Location::Body, "/customer/email"),
            (Location::Body, "/customer/password"),
            (Location::Body, "/customer/password"),
            (Location::Body, "/items/0/qty"),
            (Location::Body, "/items/1/extra"),
            (Location::Body, "/items/1/name"),
            (Location::Body, "/kind"),
            (Location::Body, "/ref"),
            (Location::Body, "/when"),
            (Location::Path, "/shop"),
            (Location::Query, "/dryRun"),
            (Location::Query, "/limit"),
            (Location::Header, "/x-count"),
        ]
    );
    // Two violations of one field count once.
    assert_eq!(rejected.detail, "The request has 13 invalid fields.");

    let at = |pointer| message_at(&rejected, Location::Body, pointer);
    assert_eq!(at("/admin"), "is not a known property");
    assert_eq!(at("/items/1/extra"), "is not a known property");
    assert_eq!(at("/customer/email"), "is required");
    assert_eq!(at("/items/1/name"), "is required");
    assert_eq!(at("/items/0/qty"), "must be at least 1");
    assert_eq!(at("/kind"), r#"must be one of ["retail","wholesale"]"#);
    assert_eq!(at("/ref"), "must be a valid uuid");
    assert_eq!(at("/when"), "must be a valid date");
    let mut password: Vec<&str> = rejected
        .violations
        .iter()
        .filter(|v| v.pointer == "/customer/password")
        .map(|v| v.message.as_str())
        .collect();
    password.sort_unstable();
    assert_eq!(
        password,
        [
            "must be at least 20 characters long",
            "must match the pattern ^[0-9]+$"
        ]
    );
    assert_eq!(
        message_at(&rejected, Location::Path, "/shop"),
        "must be at least 3 characters long"
    );
}

#[tokio::test]
async fn no_violation_message_echoes_the_offending_value() {
    let mut request = bad_order_request().await;
    let rejected = refusal(run(&mut request, &CREATE_ORDER).await);
    let response = rejected.as_response();
    let body = response_json(response).await.to_string();
    for value in [
        "hunter2secret",
        "resale",
        "2024-02-30",
        "not-a-uuid",
        "many",
        "ten",
        "yes",
    ] {
        assert!(!body.contains(value), "the problem echoes {value}: {body}");
        for violation in &rejected.violations {
            assert!(!violation.message.contains(value), "{violation:?}");
        }
    }
}

#[tokio::test]
async fn the_order_of_violations_is_the_same_every_time() {
    let mut first = None;
    for _ in 0..5 {
        let mut request = bad_order_request().await;
        let violations = refusal(run(&mut request, &CREATE_ORDER).await).violations;
        match &first {
            None => first = Some(violations),
            Some(first) => assert_eq!(first, &violations),
        }
    }
}

#[tokio::test]
async fn pointers_escape_tilde_and_slash_in_property_names() {
    let mut request = json_request("/note", r#"{"a/b~c": 1, "note": "toolong"}"#);
    let rejected = refusal(run(&mut request, &OPTIONAL_NOTE).await);
    assert_eq!(
        places(&rejected),
        [(Location::Body, "/a~1b~0c"), (Location::Body, "/note")]
    );
    assert_eq!(
        message_at(&rejected, Location::Body, "/note"),
        "must be at most 5 characters long"
    );
}

#[tokio::test]
async fn a_body_of_the_wrong_json_type_is_a_violation_at_the_root() {
    let mut request = json_request("/blob", r#"["not", "an", "object"]"#);
    let rejected = refusal(run(&mut request, &JSON_BLOB).await);
    assert_eq!(places(&rejected), [(Location::Body, "")]);
    assert_eq!(rejected.violations[0].message, "must be of type object");
}

// ---------------------------------------------------------------------------------------
// (4) Problem rendering
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rejected_request_renders_as_problem_json_with_every_error() {
    let request = Request::builder()
        .uri("/items/abc".parse().expect("a valid URI"))
        .finish();
    let mut request = routed("/items/:id", request).await;
    let error = run(&mut request, &COERCE)
        .await
        .expect_err("two violations");
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    let response = error.into_response();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.content_type(), Some("application/problem+json"));
    let body = response_json(response).await;
    assert_eq!(
        body,
        json!({
            "type": "about:blank",
            "title": "Bad Request",
            "status": 400,
            "detail": "The request has 2 invalid fields.",
            "code": "invalid_request",
            "errors": [
                {"in": "path", "pointer": "/id", "detail": "must be of type integer"},
                {"in": "query", "pointer": "/name", "detail": "is required"},
            ],
        })
    );
}

#[tokio::test]
async fn too_large_and_unsupported_bodies_have_their_own_codes() {
    let mut request = json_request("/blob", &json_of_len(LIMITS.max_body_bytes + 1));
    let response = run(&mut request, &JSON_BLOB)
        .await
        .expect_err("too large")
        .into_response();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.content_type(), Some("application/problem+json"));
    let body = response_json(response).await;
    assert_eq!(body["code"], "payload_too_large");
    assert_eq!(body["status"], 413);
    assert_eq!(body["title"], "Payload Too Large");
    assert_eq!(body["errors"], json!([]));

    let mut request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "text/plain")
        .body("{}");
    let response = run(&mut request, &JSON_BLOB)
        .await
        .expect_err("unsupported")
        .into_response();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body = response_json(response).await;
    assert_eq!(body["code"], "unsupported_media_type");
    assert_eq!(body["status"], 415);
    assert_eq!(body["detail"], "Expected a body of type application/json.");
}

#[tokio::test]
async fn problem_response_lists_violations_with_in_pointer_and_detail() {
    let violations = [
        Violation {
            location: Location::Header,
            pointer: "/x-count".to_owned(),
            message: "must be of type integer".to_owned(),
        },
        Violation {
            location: Location::Body,
            pointer: String::new(),
            message: "is required".to_owned(),
        },
    ];
    let response = problem_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        "custom",
        "Something.",
        &violations,
    );
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(response.content_type(), Some("application/problem+json"));
    let body = response_json(response).await;
    assert_eq!(
        body,
        json!({
            "type": "about:blank",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": "Something.",
            "code": "custom",
            "errors": [
                {"in": "header", "pointer": "/x-count", "detail": "must be of type integer"},
                {"in": "body", "pointer": "", "detail": "is required"},
            ],
        })
    );
}

#[test]
fn locations_serialize_in_lowercase() {
    let names: Vec<Value> = [
        Location::Body,
        Location::Path,
        Location::Query,
        Location::Header,
    ]
    .iter()
    .map(|l| serde_json::to_value(l).expect("serializable"))
    .collect();
    assert_eq!(
        names,
        [
            json!("body"),
            "path".into(),
            "query".into(),
            "header".into()
        ]
    );
}

#[tokio::test]
async fn method_not_allowed_is_a_405_problem_with_allow() {
    let error = MethodNotAllowed {
        allow: &["GET", "POST"],
    };
    assert_eq!(error.to_string(), "This path allows only GET, POST.");
    assert_eq!(error.status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = error.as_response();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.content_type(), Some("application/problem+json"));
    assert_eq!(
        response.headers().get(header::ALLOW).map(|v| v.as_bytes()),
        Some(&b"GET, POST"[..])
    );
    let body = response_json(response).await;
    assert_eq!(body["code"], "method_not_allowed");
    assert_eq!(body["status"], 405);
    assert_eq!(body["detail"], "This path allows only GET, POST.");
    assert_eq!(body["errors"], json!([]));

    // The same through `method_not_allowed`, as routes return it.
    let response = method_not_allowed(&["DELETE"]).into_response();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.headers().get(header::ALLOW).map(|v| v.as_bytes()),
        Some(&b"DELETE"[..])
    );
}

#[tokio::test]
async fn unauthenticated_is_a_401_problem_that_names_schemes_not_credentials() {
    let key = Credential::ApiKey {
        location: CredentialIn::Header,
        name: "x-api-key",
    };
    let request = Request::builder()
        .header("x-api-key", "k-secret-value")
        .finish();
    let error = Unauthenticated::new(
        &request,
        &[("apiKey", &key), ("bearer", &Credential::Bearer)],
    );
    let response = poem::Error::from(error).into_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.content_type(), Some("application/problem+json"));
    let body = response_json(response).await;
    assert_eq!(body["code"], "unauthenticated");
    assert_eq!(body["status"], 401);
    assert_eq!(body["errors"], json!([]));
    assert_eq!(
        body["detail"],
        "This operation needs credentials: apiKey, bearer (missing: bearer)."
    );
    assert!(!body.to_string().contains("k-secret-value"));
}

// ---------------------------------------------------------------------------------------
// (5) Security helpers
// ---------------------------------------------------------------------------------------

fn with_headers(uri: &str, headers: &[(&str, &str)]) -> Request {
    let mut builder = Request::builder().uri(uri.parse().expect("a valid URI"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.finish()
}

const HEADER_KEY: Credential = Credential::ApiKey {
    location: CredentialIn::Header,
    name: "x-api-key",
};
const QUERY_KEY: Credential = Credential::ApiKey {
    location: CredentialIn::Query,
    name: "key",
};
const COOKIE_KEY: Credential = Credential::ApiKey {
    location: CredentialIn::Cookie,
    name: "session",
};

#[test]
fn a_header_api_key_is_found_by_its_case_insensitive_name() {
    let request = with_headers("/", &[("X-Api-Key", "k1")]);
    assert_eq!(credential(&request, &HEADER_KEY), Some("k1"));
    let upper = Credential::ApiKey {
        location: CredentialIn::Header,
        name: "X-API-KEY",
    };
    assert_eq!(credential(&request, &upper), Some("k1"));
    assert_eq!(
        credential(&with_headers("/", &[("x-api-key", "")]), &HEADER_KEY),
        None
    );
    assert_eq!(credential(&with_headers("/", &[]), &HEADER_KEY), None);
    assert_eq!(
        credential(&with_headers("/", &[("x-api-key-2", "k")]), &HEADER_KEY),
        None
    );
}

#[test]
fn a_query_api_key_is_found_by_its_exact_name() {
    assert_eq!(
        credential(&with_headers("/?key=q1", &[]), &QUERY_KEY),
        Some("q1")
    );
    assert_eq!(
        credential(&with_headers("/?a=1&key=q2&b=2", &[]), &QUERY_KEY),
        Some("q2")
    );
    assert_eq!(
        credential(&with_headers("/?apikey=x&keys=y&key2=z", &[]), &QUERY_KEY),
        None
    );
    assert_eq!(credential(&with_headers("/?key=", &[]), &QUERY_KEY), None);
    assert_eq!(credential(&with_headers("/?key", &[]), &QUERY_KEY), None);
    assert_eq!(credential(&with_headers("/", &[]), &QUERY_KEY), None);
    // A header of the same name is not a query parameter.
    assert_eq!(
        credential(&with_headers("/", &[("key", "h")]), &QUERY_KEY),
        None
    );
}

#[test]
fn a_cookie_api_key_is_found_among_other_cookies() {
    let cookie = |value: &str| with_headers("/", &[("cookie", value)]);
    assert_eq!(credential(&cookie("session=s1"), &COOKIE_KEY), Some("s1"));
    assert_eq!(
        credential(&cookie("a=1; session=s2; b=2"), &COOKIE_KEY),
        Some("s2")
    );
    assert_eq!(
        credential(&cookie("a=1;session=s3"), &COOKIE_KEY),
        Some("s3")
    );
    assert_eq!(
        credential(&cookie("xsession=x; session_id=y"), &COOKIE_KEY),
        None
    );
    assert_eq!(credential(&cookie("session="), &COOKIE_KEY), None);
    assert_eq!(credential(&with_headers("/", &[]), &COOKIE_KEY), None);
    // A query parameter of the same name is not a cookie.
    assert_eq!(
        credential(&with_headers("/?session=q", &[]), &COOKIE_KEY),
        None
    );
}

#[test]
fn bearer_and_basic_compare_the_scheme_name_case_insensitively() {
    let auth = |value: &str| with_headers("/", &[("authorization", value)]);
    for value in ["Bearer tok", "bearer tok", "BEARER tok", "Bearer  tok "] {
        assert_eq!(
            credential(&auth(value), &Credential::Bearer),
            Some("tok"),
            "{value}"
        );
        assert_eq!(
            credential(&auth(value), &Credential::Basic),
            None,
            "{value}"
        );
    }
    for value in [
        "Basic dXNlcjpwYXNz",
        "basic dXNlcjpwYXNz",
        "BASIC dXNlcjpwYXNz",
    ] {
        assert_eq!(
            credential(&auth(value), &Credential::Basic),
            Some("dXNlcjpwYXNz"),
            "{value}"
        );
        assert_eq!(
            credential(&auth(value), &Credential::Bearer),
            None,
            "{value}"
        );
    }
    for value in [
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Bearertok",
        "Token tok",
        "tok",
        "",
    ] {
        assert_eq!(
            credential(&auth(value), &Credential::Bearer),
            None,
            "{value:?}"
        );
    }
    // The header's name is case-insensitive too.
    assert_eq!(
        credential(
            &with_headers("/", &[("Authorization", "Bearer t")]),
            &Credential::Bearer
        ),
        Some("t")
    );
}

#[test]
fn unauthenticated_lists_exactly_the_missing_schemes_in_order() {
    let schemes: [(&'static str, &Credential); 5] = [
        ("headerKey", &HEADER_KEY),
        ("queryKey", &QUERY_KEY),
        ("cookieKey", &COOKIE_KEY),
        ("bearer", &Credential::Bearer),
        ("basic", &Credential::Basic),
    ];
    let names = ["headerKey", "queryKey", "cookieKey", "bearer", "basic"];

    let none = Unauthenticated::new(&with_headers("/", &[]), &schemes);
    assert_eq!(none.schemes, names);
    assert_eq!(none.missing, names);

    let some = Unauthenticated::new(
        &with_headers(
            "/?key=q",
            &[("cookie", "session="), ("authorization", "Basic abc")],
        ),
        &schemes,
    );
    assert_eq!(some.schemes, names);
    assert_eq!(some.missing, ["headerKey", "cookieKey", "bearer"]);

    let all = Unauthenticated::new(
        &with_headers(
            "/?key=q",
            &[
                ("x-api-key", "h"),
                ("cookie", "session=s"),
                ("authorization", "Bearer t"),
            ],
        ),
        &schemes,
    );
    assert_eq!(all.missing, ["basic"]);

    let empty = Unauthenticated::new(&with_headers("/", &[]), &[]);
    assert!(empty.schemes.is_empty() && empty.missing.is_empty());
}

// ---------------------------------------------------------------------------------------
// Operation announcement, responses, compilation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_route_announces_its_operation_to_the_slot_in_the_request() {
    let slot = OperationSlot::default();
    let route = Route::new().at(
        "/items/:id",
        poem::endpoint::make_sync(|request: Request| {
            announce_operation(&request, "getItem");
        }),
    );
    let mut request = Request::builder()
        .uri("/items/1".parse().expect("a valid URI"))
        .finish();
    request.extensions_mut().insert(slot.clone());
    route.call(request).await.expect("the route matches");
    assert_eq!(slot.get(), Some("getItem"));

    // Without a slot it is a no-op.
    let bare = Request::builder().finish();
    announce_operation(&bare, "anything");
    assert_eq!(OperationSlot::default().get(), None);
}

#[tokio::test]
async fn response_helpers_set_status_type_and_headers() {
    let response = codegen_runtime::json_response(201, "application/json", &json!({"id": 1}));
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.content_type(), Some("application/json"));
    assert_eq!(response_json(response).await, json!({"id": 1}));

    let response = codegen_runtime::empty_response(204);
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let response = codegen_runtime::empty_response(1000);
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let response = codegen_runtime::body_response(200, "image/png", poem::Body::from(vec![1u8, 2]));
    assert_eq!(response.content_type(), Some("image/png"));
    let bytes = response
        .into_body()
        .into_vec()
        .await
        .expect("the body is readable");
    assert_eq!(bytes, [1, 2]);

    let mut response = codegen_runtime::empty_response(200);
    codegen_runtime::set_header(&mut response, "x-next", &"cursor-2");
    codegen_runtime::set_header(&mut response, "x-bad", &"line\nbreak");
    assert_eq!(
        response.headers().get("x-next").map(|v| v.as_bytes()),
        Some(&b"cursor-2"[..])
    );
    assert!(response.headers().get("x-bad").is_none());
}

/// A JSON body the document requires, for the operations of the generated documents.
const JSON_BODY: Option<Body> = Some(Body {
    media_type: "application/json",
    json: true,
    required: true,
});

/// The generated documents compile, and what they compile to decides: a request they
/// allow is let through unchanged, one they forbid is refused at the right pointers.
#[tokio::test]
async fn the_generated_petstore_schemas_compile_and_validate() {
    static CREATE_PETS: Operation = Operation {
        id: "createPets",
        params: &[],
        body: JSON_BODY,
    };
    static LIST_PETS: Operation = Operation {
        id: "listPets",
        params: &[param("limit", Location::Query, Scalar::Integer, false)],
        body: None,
    };
    let petstore = Validators::compile(include_str!(
        "../../tests/petstore/src/generated/request_schemas.json"
    ));

    let pet = json!({"id": 7, "name": "Rex", "tag": "dog"});
    let mut request = json_request("/pets", &pet.to_string());
    let mut input = extract(&mut request, &petstore, &CREATE_PETS, LIMITS)
        .await
        .expect("a valid pet is accepted");
    assert_eq!(input.json_body::<Value>().expect("the body"), pet);

    // `id` must be an integer and `name` is required (through the `Pet` definition).
    let mut request = json_request("/pets", r#"{"id": "seven", "tag": "dog"}"#);
    let rejected = refusal(extract(&mut request, &petstore, &CREATE_PETS, LIMITS).await);
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        places(&rejected),
        [(Location::Body, "/id"), (Location::Body, "/name")]
    );
    assert_eq!(
        message_at(&rejected, Location::Body, "/id"),
        "must be of type integer"
    );
    assert_eq!(
        message_at(&rejected, Location::Body, "/name"),
        "is required"
    );

    let query = |uri: &str| {
        Request::builder()
            .uri(uri.parse().expect("a valid URI"))
            .finish()
    };
    let mut input = extract(&mut query("/pets?limit=100"), &petstore, &LIST_PETS, LIMITS)
        .await
        .expect("the largest page is accepted");
    assert_eq!(
        input.params::<Value>().expect("the params"),
        json!({"limit": 100})
    );
    let rejected =
        refusal(extract(&mut query("/pets?limit=101"), &petstore, &LIST_PETS, LIMITS).await);
    assert_eq!(places(&rejected), [(Location::Query, "/limit")]);
    assert_eq!(rejected.violations[0].message, "must be at most 100");
}

/// The same for the server's own document: `sign_up`'s body and `get_timeline`'s query.
#[tokio::test]
async fn the_generated_minitter_schemas_compile_and_validate() {
    static SIGN_UP: Operation = Operation {
        id: "sign_up",
        params: &[],
        body: JSON_BODY,
    };
    static GET_TIMELINE: Operation = Operation {
        id: "get_timeline",
        params: &[
            param("limit", Location::Query, Scalar::Integer, false),
            param("page_token", Location::Query, Scalar::String, false),
        ],
        body: None,
    };
    let minitter = Validators::compile(include_str!(
        "../../../server/src/generated/request_schemas.json"
    ));

    let user = json!({
        "username": "ada_l",
        "email": "ada@example.com",
        "password": "correct horse battery staple",
    });
    let mut request = json_request("/v1/users", &user.to_string());
    let mut input = extract(&mut request, &minitter, &SIGN_UP, LIMITS)
        .await
        .expect("a valid sign-up is accepted");
    assert_eq!(input.json_body::<Value>().expect("the body"), user);

    let mut request = json_request(
        "/v1/users",
        r#"{"username": "ada_l", "email": "ada@example.com", "password": "short", "admin": true}"#,
    );
    let rejected = refusal(extract(&mut request, &minitter, &SIGN_UP, LIMITS).await);
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        places(&rejected),
        [(Location::Body, "/admin"), (Location::Body, "/password")]
    );
    assert_eq!(
        message_at(&rejected, Location::Body, "/admin"),
        "is not a known property"
    );
    assert_eq!(
        message_at(&rejected, Location::Body, "/password"),
        "must be at least 8 characters long"
    );

    let query = |uri: &str| {
        Request::builder()
            .uri(uri.parse().expect("a valid URI"))
            .finish()
    };
    let mut input = extract(
        &mut query("/v1/timeline?limit=100"),
        &minitter,
        &GET_TIMELINE,
        LIMITS,
    )
    .await
    .expect("the largest page is accepted");
    assert_eq!(
        input.params::<Value>().expect("the params"),
        json!({"limit": 100})
    );
    let rejected = refusal(
        extract(
            &mut query("/v1/timeline?limit=0"),
            &minitter,
            &GET_TIMELINE,
            LIMITS,
        )
        .await,
    );
    assert_eq!(places(&rejected), [(Location::Query, "/limit")]);
    assert_eq!(rejected.violations[0].message, "must be at least 1");
}

#[test]
#[should_panic(expected = "does not compile")]
fn a_schema_that_does_not_compile_is_a_bug_found_at_start_up() {
    let _ =
        Validators::compile(r#"{"definitions": {}, "operations": {"x": {"query": {"type": 5}}}}"#);
}

#[tokio::test]
async fn a_document_without_definitions_still_compiles() {
    let validators = Validators::compile(
        r#"{"operations": {"narrow": {"query": {"type": "object", "properties": {"limit": {"type": "integer"}}}}}}"#,
    );
    let mut request = Request::builder()
        .uri("/?limit=x".parse().expect("a valid URI"))
        .finish();
    let result = extract(&mut request, &validators, &NARROW, LIMITS).await;
    assert_eq!(places(&refusal(result)), [(Location::Query, "/limit")]);
}

#[test]
fn a_cidr_is_a_network_in_cidr_notation_or_one_address() {
    let validator = codegen_runtime::validation_options()
        .build(&json!({"type": "string", "format": "cidr"}))
        .expect("the schema compiles");
    for network in [
        "10.0.0.0/8",
        "10.1.2.3/8",
        "203.0.113.7",
        "2001:db8::/32",
        "::1",
    ] {
        assert!(validator.is_valid(&json!(network)), "{network}");
    }
    for other in [
        "10.0.0.0/33",
        "2001:db8::/129",
        "300.1.1.1",
        "example.com",
        "",
        "/8",
    ] {
        assert!(!validator.is_valid(&json!(other)), "{other}");
    }
}
