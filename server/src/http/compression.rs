//! Response compression negotiated by `Accept-Encoding` (zstd, br, gzip), and request
//! bodies accepted compressed (`Content-Encoding`).
//!
//! poem's own `Compression` middleware does the coding but neither sends
//! `Vary: Accept-Encoding` (so caches could hand a gzip body to a client that cannot read
//! it) nor recognises the `zstd` token, so negotiation lives here and poem's `Compress`
//! does the work.
//!
//! Two choices keep compression from costing more than it saves:
//! - **Bodies under 1 KiB go as they are** ([`MIN_COMPRESSED_BYTES`]). A single user or
//!   tweet is a few hundred bytes: gzip's 18 bytes of framing and the encoder's set-up
//!   (a fresh state and window per response) cost more CPU than the hundred-odd bytes
//!   saved are worth, and such a body fits one TCP segment either way. CDNs draw the
//!   line in the same place (CloudFront compresses only bodies of 1,000 bytes or more).
//!   The size is known only when the whole body is in memory already (JSON, the
//!   document), which is checked without waiting; a body still streaming is compressed
//!   whatever its size.
//! - **Fast levels** ([`level`]): gzip and deflate 1, brotli 3, zstd 1. Responses are
//!   compressed on every request, never once for many, so CPU per byte matters more
//!   than the last percent of ratio; on JSON these levels already shrink a timeline page
//!   several times over.

use bytes::Bytes;
use futures::{FutureExt, StreamExt, stream};
use poem::http::{HeaderValue, StatusCode, header};
use poem::web::{Compress, CompressionAlgo, CompressionLevel};
use poem::{Body, Endpoint, IntoResponse, Request, Response};

/// Bodies smaller than this are not compressed (see the module documentation).
pub const MIN_COMPRESSED_BYTES: usize = 1024;

/// Middleware: decompress request bodies, compress responses.
pub async fn compression<E: Endpoint>(next: E, mut request: Request) -> poem::Result<Response> {
    if let Some(coding) = request.header(header::CONTENT_ENCODING) {
        let coding = coding.trim().to_ascii_lowercase();
        if coding != "identity" {
            let Some(decoded) = decoder(&coding, request.take_body()) else {
                return Err(poem::Error::from_string(
                    format!(
                        "Content-Encoding {coding} is not supported; use gzip, br, deflate or zstd."
                    ),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ));
            };
            request.set_body(decoded);
            request.headers_mut().remove(header::CONTENT_ENCODING);
            request.headers_mut().remove(header::CONTENT_LENGTH);
        }
    }
    let chosen = negotiate(request.header(header::ACCEPT_ENCODING).unwrap_or_default());
    let mut response = next.call(request).await?.into_response();
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    let already_encoded = response.headers().contains_key(header::CONTENT_ENCODING);
    let bodiless = matches!(
        response.status(),
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
    );
    let Some(algo) = chosen.filter(|_| !already_encoded && !bodiless) else {
        return Ok(response);
    };
    let (body, small) = peek_size(response.take_body());
    response.set_body(body);
    if small {
        return Ok(response);
    }
    Ok(Compress::new(response, algo)
        .with_quality(level(algo))
        .into_response())
}

/// The level each coding runs at: the fast end of each (see the module documentation).
fn level(algo: CompressionAlgo) -> CompressionLevel {
    CompressionLevel::Precise(match algo {
        CompressionAlgo::BR => 3,
        CompressionAlgo::GZIP | CompressionAlgo::DEFLATE | CompressionAlgo::ZSTD => 1,
    })
}

/// Whether `body` is known to be smaller than [`MIN_COMPRESSED_BYTES`], with the body to
/// send in its place. Only what is ready now is read (a body in memory is ready whole);
/// the first chunk that is not, or reaching the minimum, stops the look, and the chunks
/// read go back in front of the rest, so a streaming body is never waited on.
fn peek_size(body: Body) -> (Body, bool) {
    if body.is_empty() {
        return (body, true);
    }
    let mut rest = body.into_bytes_stream();
    let mut read = Vec::new();
    let mut length = 0;
    loop {
        match rest.next().now_or_never() {
            // The end: the whole body is in `read`.
            Some(None) => {
                let whole = match read.len() {
                    1 => read.pop().expect("BUG: one chunk was read"),
                    _ => Bytes::from(read.concat()),
                };
                return (Body::from_bytes(whole), length < MIN_COMPRESSED_BYTES);
            }
            Some(Some(Ok(chunk))) => {
                length += chunk.len();
                read.push(chunk);
                if length < MIN_COMPRESSED_BYTES {
                    continue;
                }
                let body = stream::iter(read.into_iter().map(Ok)).chain(rest);
                return (Body::from_bytes_stream(body), false);
            }
            // Not ready (a stream), or failing: sent on as it was, the error included.
            outcome => {
                let failed = outcome.into_iter().flatten();
                let body = stream::iter(read.into_iter().map(Ok).chain(failed)).chain(rest);
                return (Body::from_bytes_stream(body), false);
            }
        }
    }
}

/// A body that decodes `body` from `coding`, or `None` for a coding we do not know.
/// The decoded size is limited where the body is read, so a small bomb cannot expand
/// past the body limit.
fn decoder(coding: &str, body: Body) -> Option<Body> {
    use async_compression::tokio::bufread::{
        BrotliDecoder, DeflateDecoder, GzipDecoder, ZstdDecoder,
    };
    let reader = tokio::io::BufReader::new(body.into_async_read());
    Some(match coding {
        "gzip" | "x-gzip" => Body::from_async_read(GzipDecoder::new(reader)),
        "br" => Body::from_async_read(BrotliDecoder::new(reader)),
        "deflate" => Body::from_async_read(DeflateDecoder::new(reader)),
        "zstd" => Body::from_async_read(ZstdDecoder::new(reader)),
        _ => return None,
    })
}

/// The coding a response to a request with this `Accept-Encoding` is sent in:
/// `identity`, `gzip`, `br` or `zstd` (for keys of what varies by it).
pub fn coding_for(accept_encoding: &str) -> &'static str {
    match negotiate(accept_encoding) {
        None => "identity",
        Some(CompressionAlgo::GZIP) => "gzip",
        Some(CompressionAlgo::BR) => "br",
        Some(CompressionAlgo::ZSTD) => "zstd",
        Some(CompressionAlgo::DEFLATE) => "deflate",
    }
}

/// Picks the best coding the client accepts, by q-value and then our preference
/// (zstd, br, gzip). `identity` and unknown codings choose no compression.
fn negotiate(accept_encoding: &str) -> Option<CompressionAlgo> {
    let mut best: Option<(u16, u8, CompressionAlgo)> = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        // q is at most three decimals (RFC 9110), so a thousandth is exact.
        let quality = (quality.clamp(0.0, 1.0) * 1000.0).round() as u16;
        let (rank, algo) = match coding.as_str() {
            "zstd" => (3, CompressionAlgo::ZSTD),
            "br" => (2, CompressionAlgo::BR),
            "gzip" | "x-gzip" => (1, CompressionAlgo::GZIP),
            _ => continue,
        };
        if quality == 0 {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(q, r, _)| (quality, rank) > (*q, *r))
        {
            best = Some((quality, rank, algo));
        }
    }
    best.map(|(_, _, algo)| algo)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::task::Poll;

    use poem::endpoint::make_sync;

    use super::*;

    /// What the middleware answers, for a request accepting `accept`, to a handler that
    /// sends `body`.
    async fn served(body: impl Fn() -> Body + Send + Sync + 'static, accept: &str) -> Response {
        let request = Request::builder()
            .header(header::ACCEPT_ENCODING, accept)
            .finish();
        compression(make_sync(move |_| body()), request)
            .await
            .expect("the handler answers")
    }

    fn gunzip(bytes: &[u8]) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .expect("gzip");
        text
    }

    /// A JSON-looking body of `length` bytes.
    fn json(length: usize) -> String {
        let item = r#"{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","text":"hello"},"#;
        item.repeat(length / item.len() + 1)[..length].to_owned()
    }

    #[tokio::test]
    async fn a_body_under_a_kibibyte_stays_identity_even_when_gzip_is_accepted() {
        let body = json(200);
        let sent = body.clone();
        let response = served(move || Body::from_string(sent.clone()), "gzip").await;
        assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(response.headers()[header::VARY], "accept-encoding");
        let received = response.into_body().into_string().await.expect("body");
        assert_eq!(received, body);
    }

    #[tokio::test]
    async fn a_body_of_four_kibibytes_is_gzipped() {
        let body = json(4096);
        let sent = body.clone();
        let response = served(move || Body::from_string(sent.clone()), "gzip").await;
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(response.headers()[header::VARY], "accept-encoding");
        let compressed = response.into_body().into_bytes().await.expect("body");
        assert!(compressed.len() < body.len() / 4);
        assert_eq!(gunzip(&compressed), body);
    }

    #[tokio::test]
    async fn a_body_in_ready_chunks_is_measured_whole() {
        let chunks = || {
            let chunk = Bytes::from(json(400));
            stream::iter([chunk.clone(), chunk]).map(Ok::<_, std::io::Error>)
        };
        let small = served(move || Body::from_bytes_stream(chunks()), "gzip").await;
        assert!(small.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(
            small.into_body().into_string().await.expect("body"),
            json(400).repeat(2)
        );

        let chunks = || {
            let chunk = Bytes::from(json(800));
            stream::iter([chunk.clone(), chunk]).map(Ok::<_, std::io::Error>)
        };
        let large = served(move || Body::from_bytes_stream(chunks()), "gzip").await;
        assert_eq!(large.headers()[header::CONTENT_ENCODING], "gzip");
        let compressed = large.into_body().into_bytes().await.expect("body");
        assert_eq!(gunzip(&compressed), json(800).repeat(2));
    }

    #[tokio::test]
    async fn a_streaming_body_of_unknown_size_is_compressed_and_not_waited_on() {
        // One small chunk that is not ready at the first poll, like bytes still on the way.
        let streaming = || {
            let mut polls = 0;
            Body::from_bytes_stream(futures::stream::poll_fn(move |cx| {
                polls += 1;
                match polls {
                    1 => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    2 => Poll::Ready(Some(Ok::<_, std::io::Error>(Bytes::from_static(b"tiny")))),
                    _ => Poll::Ready(None),
                }
            }))
        };
        let response = served(streaming, "gzip").await;
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        let compressed = response.into_body().into_bytes().await.expect("body");
        assert_eq!(gunzip(&compressed), "tiny");
    }

    #[test]
    fn every_coding_runs_at_a_fast_level() {
        let precise = |algo| match level(algo) {
            CompressionLevel::Precise(level) => level,
            other => panic!("{other:?} is not a precise level"),
        };
        assert_eq!(precise(CompressionAlgo::GZIP), 1);
        assert_eq!(precise(CompressionAlgo::DEFLATE), 1);
        assert!((1..=4).contains(&precise(CompressionAlgo::BR)));
        assert!((1..=3).contains(&precise(CompressionAlgo::ZSTD)));
    }

    #[test]
    fn the_client_preference_wins_then_ours() {
        assert_eq!(negotiate("gzip"), Some(CompressionAlgo::GZIP));
        assert_eq!(negotiate("gzip, br"), Some(CompressionAlgo::BR));
        assert_eq!(negotiate("gzip;q=1, br;q=0.5"), Some(CompressionAlgo::GZIP));
        assert_eq!(negotiate("zstd, br, gzip"), Some(CompressionAlgo::ZSTD));
    }

    #[test]
    fn identity_refusals_and_unknown_codings_choose_nothing() {
        assert_eq!(negotiate(""), None);
        assert_eq!(negotiate("identity"), None);
        assert_eq!(negotiate("gzip;q=0"), None);
        assert_eq!(negotiate("compress"), None);
    }
}
