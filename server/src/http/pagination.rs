//! Page tokens: the opaque, tamper-evident cursors of keyset-paginated lists.
//!
//! A token is the cursor (the last item's key) and an HMAC-SHA256 tag over the cursor and
//! the identity of the list it belongs to (`timeline:<user>`, `followers:<user>`, ...). A
//! token that was altered, made up, or issued for another list fails the check and the
//! request is a 400, never a 500. The key is derived from the server secret, so every
//! instance that shares the secret accepts every other's tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The tag is truncated to 128 bits: plenty against forgery, and tokens stay short.
const TAG_BYTES: usize = 16;
/// The page size when a request names none.
pub const DEFAULT_LIMIT: u32 = 20;

/// Issues and checks page tokens.
#[derive(Clone)]
pub struct PageTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens")
    }
}

impl PageTokens {
    /// Derives the page-token key from the server secret.
    pub fn new(secret: &SecretString) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .expect("BUG: HMAC accepts keys of any length");
        mac.update(b"minitter page tokens v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// The token for the page after `cursor` in `list`.
    pub fn issue(&self, list: &str, cursor: &str) -> String {
        let tag = self.tag(list, cursor).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(cursor),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// The cursor of a token issued for `list`, or `None` for any other token.
    pub fn verify(&self, list: &str, token: &str) -> Option<String> {
        let (cursor, tag) = token.split_once('.')?;
        let cursor = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != TAG_BYTES {
            return None;
        }
        // Constant-time comparison of the truncated tag.
        self.tag(list, &cursor).verify_truncated_left(&tag).ok()?;
        Some(cursor)
    }

    fn tag(&self, list: &str, cursor: &str) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("BUG: HMAC accepts 32-byte keys");
        mac.update(list.as_bytes());
        mac.update(&[0]);
        mac.update(cursor.as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> PageTokens {
        PageTokens::new(&SecretString::from(secret.to_owned()))
    }

    #[test]
    fn a_token_round_trips_for_its_own_list_only() {
        let t = tokens("secret");
        let token = t.issue("timeline:a", "0193-cursor");
        assert_eq!(
            t.verify("timeline:a", &token).as_deref(),
            Some("0193-cursor")
        );
        assert_eq!(t.verify("timeline:b", &token), None);
        assert_eq!(tokens("other secret").verify("timeline:a", &token), None);
    }

    #[test]
    fn altered_or_garbage_tokens_are_refused() {
        let t = tokens("secret");
        let token = t.issue("tweets:a", "0193-cursor");
        let (_, tag) = token.split_once('.').expect("two parts");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("0000-cursor"));
        for bad in [
            forged.as_str(),
            "",
            ".",
            "garbage",
            "a.b.c",
            &token[..token.len() - 2],
            "%%%.%%%",
        ] {
            assert_eq!(t.verify("tweets:a", bad), None, "{bad:?}");
        }
    }
}
