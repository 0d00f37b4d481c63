//! Passwords and bearer tokens.
//!
//! Passwords are hashed with argon2id at OWASP's recommended parameters (19 MiB, 2
//! passes, 1 lane) on the blocking thread pool, never on the async runtime: a hash takes
//! tens of milliseconds of CPU. Bearer tokens are HS256 JWTs whose `exp`, `iat`, `iss`,
//! `aud` and `sub` are all required and checked (RFC 8725): a token with another
//! algorithm (`none` in any spelling included), another key, another issuer or audience,
//! a tampered payload or an expiry more than [`LEEWAY_SECONDS`] ago is refused. So is a
//! token not valid yet: an `nbf` (optional: this server does not issue one) or an `iat`
//! more than the leeway in the future. This server never issues either, so such a token
//! was signed by something else holding the key, or by a clock gone wrong, and RFC 7519
//! says a token must not be accepted before its `nbf`.

use std::sync::{Arc, LazyLock};

use anyhow::{Context, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The `iss` of every token this server issues and accepts.
pub const ISSUER: &str = "minitter";
/// The `aud` of every token this server issues and accepts.
pub const AUDIENCE: &str = "minitter-api";
/// Clock skew tolerated when checking `exp`, `nbf` and `iat`. Small, so an expired token
/// dies promptly.
pub const LEEWAY_SECONDS: u64 = 5;

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
    let params =
        Params::new(19 * 1024, 2, 1, None).expect("BUG: constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string, off the async runtime.
pub async fn hash_password(password: SecretString) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await
    .context("the hashing task failed")?
}

/// A hash of a password nobody knows, verified when an account does not exist so that a
/// login for an unknown email takes as long as one with a wrong password.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()
        .hash_password(b"decoy password that matches nothing", &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Checks a password against a stored PHC hash (or the decoy when `hash` is `None`),
/// off the async runtime. The comparison inside argon2 is constant-time.
pub async fn verify_password(password: SecretString, hash: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let is_real = hash.is_some();
        let hash = hash.unwrap_or_else(|| DECOY_HASH.clone());
        let parsed =
            PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash is invalid: {e}"))?;
        let matches = argon2()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        Ok(is_real && matches)
    })
    .await
    .context("the verification task failed")?
}

/// The claims of a bearer token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

/// Issues and verifies bearer tokens with one HS256 secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    validation: Arc<Validation>,
    ttl_seconds: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(secret: &SecretString, ttl_seconds: u64) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        // Checked when present; `iat`, which the library does not check, is in `verify`.
        validation.validate_nbf = true;
        Self {
            encoding: Arc::new(EncodingKey::from_secret(bytes)),
            decoding: Arc::new(DecodingKey::from_secret(bytes)),
            validation: Arc::new(validation),
            ttl_seconds,
        }
    }

    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    /// A token for `user_id`, valid for the configured lifetime from now.
    pub fn issue(&self, user_id: &str) -> Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id.to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + self.ttl_seconds,
        };
        encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.encoding,
        )
        .context("signing a token")
    }

    /// The claims of a valid token, or `None` for any token that is not.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        let now = jsonwebtoken::get_current_timestamp();
        (claims.iat <= now.saturating_add(LEEWAY_SECONDS)).then_some(claims)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(request: &poem::Request) -> Option<&str> {
    let value = request.header(poem::http::header::AUTHORIZATION)?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> Tokens {
        Tokens::new(&SecretString::from(secret.to_owned()), 3600)
    }

    #[test]
    fn an_issued_token_verifies_with_the_same_key_only() {
        let token = tokens("k".repeat(32).as_str())
            .issue("user-1")
            .expect("issue");
        let claims = tokens("k".repeat(32).as_str())
            .verify(&token)
            .expect("valid");
        assert_eq!(claims.sub, "user-1");
        assert!(tokens("j".repeat(32).as_str()).verify(&token).is_none());
    }

    /// A token signed with `secret` whose claims are this server's, changed by `edit`.
    fn signed_with(secret: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = serde_json::json!({
            "sub": "user-1",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 3600,
        });
        edit(&mut claims);
        encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let secret = "k".repeat(32);
        let tokens = tokens(&secret);
        let now = jsonwebtoken::get_current_timestamp();
        let beyond_leeway = now + LEEWAY_SECONDS + 60;
        let within_leeway = now + LEEWAY_SECONDS - 1;
        let future_nbf = signed_with(&secret, |c| c["nbf"] = beyond_leeway.into());
        assert!(tokens.verify(&future_nbf).is_none(), "nbf in the future");
        let future_iat = signed_with(&secret, |c| c["iat"] = beyond_leeway.into());
        assert!(tokens.verify(&future_iat).is_none(), "iat in the future");
        // Clock skew within the leeway is tolerated, and a past nbf is fine.
        let skewed = signed_with(&secret, |c| {
            c["iat"] = within_leeway.into();
            c["nbf"] = within_leeway.into();
        });
        assert!(tokens.verify(&skewed).is_some(), "within the leeway");
        let past_nbf = signed_with(&secret, |c| c["nbf"] = (now - 60).into());
        assert!(tokens.verify(&past_nbf).is_some(), "nbf in the past");
        // A token as this server issues it (no nbf) still verifies.
        assert!(tokens.verify(&signed_with(&secret, |_| {})).is_some());
    }

    #[test]
    fn a_malformed_nbf_is_refused() {
        let secret = "k".repeat(32);
        let token = signed_with(&secret, |c| c["nbf"] = "tomorrow".into());
        assert!(tokens(&secret).verify(&token).is_none());
    }

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_and_not_another() {
        let hash = hash_password(SecretString::from("correct horse".to_owned()))
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let right = verify_password(
            SecretString::from("correct horse".to_owned()),
            Some(hash.clone()),
        );
        assert!(right.await.expect("verify"));
        let wrong = verify_password(SecretString::from("wrong horse".to_owned()), Some(hash));
        assert!(!wrong.await.expect("verify"));
    }

    #[tokio::test]
    async fn the_decoy_never_matches() {
        let decoy = verify_password(
            SecretString::from("decoy password that matches nothing".to_owned()),
            None,
        );
        assert!(!decoy.await.expect("verify"));
    }
}
