//! Response compression negotiated by `Accept-Encoding` (zstd, br, gzip), and request
//! bodies accepted compressed (`Content-Encoding`).
//!
//! poem's own `Compression` middleware does the coding but neither sends
//! `Vary: Accept-Encoding` (so caches could hand a gzip body to a client that cannot read
//! it) nor recognises the `zstd` token, so negotiation lives here and poem's `Compress`
//! does the work.

use poem::http::{HeaderValue, StatusCode, header};
use poem::web::{Compress, CompressionAlgo};
use poem::{Body, Endpoint, IntoResponse, Request, Response};

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
    match chosen {
        Some(algo) if !already_encoded && !bodiless => {
            Ok(Compress::new(response, algo).into_response())
        }
        _ => Ok(response),
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
    use super::*;

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
