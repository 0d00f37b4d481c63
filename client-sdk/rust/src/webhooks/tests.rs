use super::*;
use http::HeaderValue;

const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const BODY: &[u8] = br#"{"type":"tweet.created","timestamp":"2025-01-02T03:04:05Z","data":{"id":"t1","text":"Hello"}}"#;
/// Neither the old nor the new secret.
const THIRD: &str = "whsec_dGhpcmQgc2VjcmV0IG9mIHRoaXJ0eS10d28=";
const ID: &str = "msg_2b5Qh8yJ3ZKQm1vXo9cRtE";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    Webhook::new(secret)
        .expect("a test secret")
        .sign(ID, timestamp, body)
        .expect("a UTF-8 body")
}

fn webhook_headers(id: Option<&str>, timestamp: Option<i64>, signature: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).expect("a header value"));
    };
    if let Some(id) = id {
        set(WEBHOOK_ID, id.to_owned());
    }
    if let Some(timestamp) = timestamp {
        set(WEBHOOK_TIMESTAMP, timestamp.to_string());
    }
    if let Some(signature) = signature {
        set(WEBHOOK_SIGNATURE, signature.to_owned());
    }
    headers
}

/// A delivery of `BODY` signed now with `secret`.
fn delivery(secret: &str) -> HeaderMap {
    let at = now();
    webhook_headers(Some(ID), Some(at), Some(&sign(secret, at, BODY)))
}

fn verifier(secret: &str) -> WebhookVerifier {
    WebhookVerifier::new(secret).expect("a valid secret")
}

#[test]
fn a_webhook_signed_with_the_secret_verifies() {
    verifier(OLD)
        .verify(&delivery(OLD), BODY)
        .expect("a genuine delivery");
}

#[test]
fn a_verified_webhook_is_parsed_into_a_value_or_a_type_of_ones_own() {
    #[derive(serde::Deserialize)]
    struct Event {
        #[serde(rename = "type")]
        kind: String,
        timestamp: chrono::DateTime<chrono::Utc>,
        data: serde_json::Value,
    }
    let verifier = verifier(OLD);
    let headers = delivery(OLD);

    let value: serde_json::Value = verifier.verify_event(&headers, BODY).expect("genuine");
    assert_eq!(value["data"]["text"], "Hello");
    let event: Event = verifier.verify_event(&headers, BODY).expect("genuine");
    assert_eq!(event.kind, "tweet.created");
    assert_eq!(event.timestamp.to_rfc3339(), "2025-01-02T03:04:05+00:00");
    assert_eq!(event.data["id"], "t1");
}

#[test]
fn a_webhook_whose_body_was_tampered_with_is_refused() {
    let headers = delivery(OLD);
    let tampered = br#"{"type":"tweet.created","timestamp":"2025-01-02T03:04:05Z","data":{"id":"t1","text":"Hellp"}}"#;
    let error = verifier(OLD)
        .verify(&headers, tampered)
        .expect_err("tampered");
    assert!(matches!(error, VerifyError::InvalidSignature), "{error:?}");
    // verify_event refuses before parsing anything.
    let error = verifier(OLD)
        .verify_event::<serde_json::Value>(&headers, tampered)
        .expect_err("tampered");
    assert!(matches!(error, VerifyError::InvalidSignature), "{error:?}");
}

#[test]
fn a_webhook_signed_with_another_secret_is_refused() {
    let error = verifier(NEW)
        .verify(&delivery(OLD), BODY)
        .expect_err("wrong secret");
    assert!(matches!(error, VerifyError::InvalidSignature), "{error:?}");
}

#[test]
fn a_webhook_older_than_five_minutes_is_refused_even_when_signed() {
    let at = now() - 5 * 60 - 10;
    let headers = webhook_headers(Some(ID), Some(at), Some(&sign(OLD, at, BODY)));
    let error = verifier(OLD).verify(&headers, BODY).expect_err("stale");
    assert!(matches!(error, VerifyError::TimestampTooOld), "{error:?}");

    // Within the tolerance it is accepted.
    let at = now() - 4 * 60;
    let headers = webhook_headers(Some(ID), Some(at), Some(&sign(OLD, at, BODY)));
    verifier(OLD).verify(&headers, BODY).expect("recent enough");
}

#[test]
fn a_webhook_from_more_than_five_minutes_ahead_is_refused() {
    let at = now() + 5 * 60 + 10;
    let headers = webhook_headers(Some(ID), Some(at), Some(&sign(OLD, at, BODY)));
    let error = verifier(OLD).verify(&headers, BODY).expect_err("future");
    assert!(matches!(error, VerifyError::TimestampInFuture), "{error:?}");
}

#[test]
fn a_webhook_missing_a_header_is_refused_naming_it() {
    let at = now();
    let signature = sign(OLD, at, BODY);
    for (headers, missing) in [
        (
            webhook_headers(None, Some(at), Some(&signature)),
            WEBHOOK_ID,
        ),
        (
            webhook_headers(Some(ID), None, Some(&signature)),
            WEBHOOK_TIMESTAMP,
        ),
        (webhook_headers(Some(ID), Some(at), None), WEBHOOK_SIGNATURE),
    ] {
        let error = verifier(OLD)
            .verify(&headers, BODY)
            .expect_err("incomplete");
        assert!(
            matches!(error, VerifyError::MissingHeader(name) if name == missing),
            "{error:?} for {missing}"
        );
    }
}

#[test]
fn a_webhook_with_an_unreadable_timestamp_is_refused() {
    let mut headers = delivery(OLD);
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from_static("yesterday"));
    let error = verifier(OLD)
        .verify(&headers, BODY)
        .expect_err("bad timestamp");
    assert!(
        matches!(error, VerifyError::InvalidHeader(WEBHOOK_TIMESTAMP)),
        "{error:?}"
    );
}

#[test]
fn a_webhook_signed_with_old_and_new_secrets_verifies_with_either() {
    let at = now();
    let both = format!("{} {}", sign(OLD, at, BODY), sign(NEW, at, BODY));
    let headers = webhook_headers(Some(ID), Some(at), Some(&both));
    verifier(OLD).verify(&headers, BODY).expect("old secret");
    verifier(NEW).verify(&headers, BODY).expect("new secret");
    let error = verifier(THIRD)
        .verify(&headers, BODY)
        .expect_err("neither secret");
    assert!(matches!(error, VerifyError::InvalidSignature), "{error:?}");
}

#[test]
fn a_webhook_verifier_with_old_and_new_secrets_accepts_either_signature() {
    let rotating = WebhookVerifier::with_secrets([OLD, NEW]).expect("valid secrets");
    rotating
        .verify(&delivery(OLD), BODY)
        .expect("signed with the old");
    rotating
        .verify(&delivery(NEW), BODY)
        .expect("signed with the new");
    let error = rotating
        .verify(&delivery(THIRD), BODY)
        .expect_err("signed with neither");
    assert!(matches!(error, VerifyError::InvalidSignature), "{error:?}");
}

#[test]
fn a_webhook_secret_is_taken_with_or_without_its_prefix_and_spaces() {
    let bare = OLD.strip_prefix(SECRET_PREFIX).expect("prefixed");
    verifier(bare)
        .verify(&delivery(OLD), BODY)
        .expect("no prefix");
    verifier(&format!("{OLD}\n"))
        .verify(&delivery(OLD), BODY)
        .expect("a newline");
}

#[test]
fn invalid_webhook_secrets_are_refused_with_their_position() {
    let no_secret: [&str; 0] = [];
    assert_eq!(
        WebhookVerifier::with_secrets(no_secret).expect_err("none"),
        SecretError::NoSecret
    );
    assert_eq!(
        WebhookVerifier::new("whsec_").expect_err("empty"),
        SecretError::Empty { index: 0 }
    );
    assert_eq!(
        WebhookVerifier::with_secrets([OLD, "whsec_not base64!"]).expect_err("not base64"),
        SecretError::NotBase64 { index: 1 }
    );
}

#[test]
fn a_webhook_body_that_is_not_utf8_is_refused() {
    let error = verifier(OLD)
        .verify(&delivery(OLD), b"{\"type\":\"\xff\"}")
        .expect_err("not UTF-8");
    assert!(matches!(error, VerifyError::BodyNotUtf8), "{error:?}");
}

#[test]
fn a_genuine_webhook_with_another_shape_is_a_json_error() {
    let verifier = verifier(OLD);
    let error = verifier
        .verify_event::<Vec<u32>>(&delivery(OLD), BODY)
        .expect_err("not a list");
    assert!(matches!(error, VerifyError::Json(_)), "{error:?}");
}

#[test]
fn a_webhook_verifier_does_not_show_its_secrets() {
    let shown = format!(
        "{:?}",
        WebhookVerifier::with_secrets([OLD, NEW]).expect("valid")
    );
    assert_eq!(shown, "WebhookVerifier { secrets: 2, .. }");
}
