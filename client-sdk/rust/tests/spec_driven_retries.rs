//! The retries follow the OpenAPI document, not a list in the SDK.
//!
//! `client-sdk/fixtures/widgets.yaml` is a document the SDK has never seen:
//! `create_widget` takes an `Idempotency-Key`, `create_gadget` does not. codegen reads
//! their facts (as `cargo regen` does for `openapi.yaml`), and the SDK's retry loop, given
//! only those facts, adds a key to the widget and replays it after a `503`, while the
//! gadget, which the server might already have made, is sent once. A second test checks
//! that the table compiled into the SDK is exactly what codegen reads from
//! `openapi.yaml`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use codegen::Document;
use codegen::sdk::{self, OperationFacts};
use minitter_client::operations::{self, Operation};
use minitter_client::{RetryPolicy, retry};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Request, Response, Route, handler, post};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/widgets.yaml");
const MINITTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml");

fn facts(path: &str) -> Vec<OperationFacts> {
    let text = std::fs::read_to_string(path).expect("the document");
    sdk::operations(&Document::parse(&text).expect("a document")).expect("facts")
}

/// The facts as the generated table holds them (strings leaked: a test lives briefly).
fn operation(facts: &[OperationFacts], id: &str) -> Operation {
    let fact = facts
        .iter()
        .find(|fact| fact.id == id)
        .expect("the operation");
    Operation {
        id: fact.id.clone().leak(),
        method: fact.method.clone().leak(),
        path: fact.path.clone().leak(),
        idempotency_key: fact.idempotency_key.clone().map(|key| &*key.leak()),
        if_none_match: fact.if_none_match,
        paginated: fact.paginated,
    }
}

/// What the fake server saw: the `Idempotency-Key` of each request (empty if none).
type Seen = Arc<Mutex<Vec<String>>>;

/// A server whose first answer to each path is `503`, and `201` after that.
async fn flaky_server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    #[handler]
    fn make(request: &Request, seen: poem::web::Data<&Seen>) -> Response {
        let key = request
            .header("idempotency-key")
            .unwrap_or_default()
            .to_owned();
        let mut seen = seen.lock().expect("the log");
        seen.push(key);
        let status = if seen.len() == 1 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::CREATED
        };
        Response::builder().status(status).finish()
    }
    use poem::EndpointExt;
    let app = Route::new()
        .at("/widgets", post(make))
        .at("/gadgets", post(make))
        .data(record);
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("a port");
    let address = acceptor.local_addr()[0]
        .as_socket_addr()
        .copied()
        .expect("a TCP address");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (format!("http://{address}"), seen)
}

fn quick() -> RetryPolicy {
    RetryPolicy::default()
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20))
}

#[tokio::test]
async fn an_operation_that_takes_an_idempotency_key_is_replayed_with_one_key() {
    let facts = facts(FIXTURE);
    let widget = operation(&facts, "create_widget");
    assert_eq!(widget.idempotency_key, Some("Idempotency-Key"));
    let (url, seen) = flaky_server().await;
    let http = reqwest::Client::new();

    let request = http
        .post(format!("{url}/widgets"))
        .body(r#"{"name":"sprocket"}"#)
        .build()
        .expect("a request");
    let response = retry::send(&http, request, Some(&widget), &quick())
        .await
        .expect("an answer");

    assert_eq!(response.status(), StatusCode::CREATED);
    let seen = seen.lock().expect("the log").clone();
    assert_eq!(seen.len(), 2, "the 503 was retried");
    assert!(!seen[0].is_empty(), "a key was added");
    assert_eq!(seen[0], seen[1], "every attempt sends the same key");
}

#[tokio::test]
async fn an_operation_without_one_is_not_replayed_after_a_503() {
    let facts = facts(FIXTURE);
    let gadget = operation(&facts, "create_gadget");
    assert_eq!(gadget.idempotency_key, None);
    let (url, seen) = flaky_server().await;
    let http = reqwest::Client::new();

    let request = http
        .post(format!("{url}/gadgets"))
        .body("{}")
        .build()
        .expect("a request");
    let response = retry::send(&http, request, Some(&gadget), &quick())
        .await
        .expect("an answer");

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(*seen.lock().expect("the log"), vec![String::new()]);
}

#[test]
fn the_sdk_table_is_what_codegen_reads_from_openapi_yaml() {
    let facts = facts(MINITTER);
    let ids: Vec<&str> = facts.iter().map(|fact| fact.id.as_str()).collect();
    let table: Vec<&str> = operations::ALL.iter().map(|op| op.id).collect();
    assert_eq!(table, ids, "run `cargo regen`");
    for fact in &facts {
        assert_eq!(
            operations::find(&fact.id),
            Some(&operation(&facts, &fact.id)),
            "run `cargo regen`"
        );
    }
    assert_eq!(
        operations::CREATE_TWEET.idempotency_key,
        Some("Idempotency-Key")
    );
}
