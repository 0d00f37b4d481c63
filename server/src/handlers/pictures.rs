//! `pictures` tag: profile pictures.
//!
//! Consistency between the `users` row and the stored object, in this order:
//! 1. write the new object under a fresh key (a failure leaves the old picture in place);
//! 2. point the row at it (if that fails, delete the new object);
//! 3. delete the old object (if that fails, the hourly sweep removes it).
//!
//! So the row never names a missing object, and an object no row names — after a crash
//! between the steps — is removed by [`sweep_orphan_pictures_hourly`].
//!
//! An upload is told to be an image by its first bytes and its header only: nothing here
//! decodes it, so a GIF header followed by HTML is stored and served as `image/gif`. What
//! keeps a browser from running such a file is the answer's headers, set for every
//! response by [`crate::http::security_headers`]: `nosniff`, so the declared image type is
//! final, and a policy that loads and runs nothing and sandboxes the document, should
//! the picture be opened as a page.

use super::Handlers;
use crate::generated::{GetPictureAuth, PicturesApi, PutPictureAuth};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::generated::types::ProblemCode;
use crate::generated::types::{Picture, PictureContentType};
use crate::generated::{GetPictureResponse, PutPictureResponse};
use crate::http::error::{ApiError, Result};
use crate::infra::store::PictureRecord;
use crate::state::AppState;

/// The largest width and height accepted: a guard against decompression bombs, checked
/// from the header before anything decodes the image.
pub const MAX_SIDE: usize = 4096;
/// How long a client may reuse a picture without asking again.
const CACHE_CONTROL: &str = "private, max-age=60";
/// Objects younger than this are never swept: an upload may be between steps 1 and 2.
const SWEEP_GRACE: Duration = Duration::from_secs(3600);

/// An image type, told by its first bytes.
fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(("image/png", "png")),
        [0xFF, 0xD8, 0xFF, ..] => Some(("image/jpeg", "jpg")),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(("image/gif", "gif")),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some(("image/webp", "webp")),
        _ => None,
    }
}

fn dimension(pixels: usize) -> Result<NonZeroU32> {
    u32::try_from(pixels)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or(ApiError::UnsupportedMedia("The image has no pixels."))
}

fn not_an_image_size() -> ApiError {
    ApiError::UnsupportedMedia("The body is empty.")
}

/// Where a user's picture is served.
pub fn picture_url(user_id: uuid::Uuid) -> String {
    format!("/v1/users/{user_id}/picture")
}

/// Deletes picture objects that no user points at and that are over an hour old, every
/// hour, until the state is dropped.
pub async fn sweep_orphan_pictures_hourly(state: Weak<AppState>) {
    let mut tick = tokio::time::interval(SWEEP_GRACE);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        match sweep_orphans(&state, SWEEP_GRACE).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "swept orphaned pictures"),
            Err(error) => {
                tracing::warn!(%error, "the picture sweep failed; it runs again in an hour")
            }
        }
    }
}

/// Deletes picture objects no user points at that are older than `grace`; returns how
/// many it deleted.
pub async fn sweep_orphans(state: &AppState, grace: Duration) -> anyhow::Result<usize> {
    let referenced = state.store.picture_keys().await?;
    let mut removed = 0;
    for object in state.pictures.list("pictures/").await? {
        let age = SystemTime::now()
            .duration_since(object.modified)
            .unwrap_or_default();
        if age > grace && !referenced.contains(&object.key) {
            state.pictures.delete(&object.key).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl PicturesApi for Handlers {
    async fn put_picture(
        &self,
        _request: &poem::Request,
        auth: PutPictureAuth<Self>,
        body: Vec<u8>,
    ) -> Result<PutPictureResponse> {
        let state = &*self.state;
        let me = auth.bearer_auth;
        let not_an_image =
            ApiError::UnsupportedMedia("The body is not a PNG, JPEG, WebP or GIF image.");
        let (content_type, extension) = sniff(&body).ok_or(not_an_image)?;
        let size = imagesize::blob_size(&body)
            .map_err(|_| ApiError::UnsupportedMedia("The image's header cannot be read."))?;
        // A header that says 0 pixels is no image (PNG and WebP forbid it): 415, as for a
        // header that cannot be read, before the check of the largest size.
        let (width, height) = (dimension(size.width)?, dimension(size.height)?);
        if size.width > MAX_SIDE || size.height > MAX_SIDE {
            return Err(ApiError::Unprocessable {
                code: ProblemCode::ImageTooLarge,
                detail: "Pictures are at most 4096 × 4096 pixels.",
            });
        }
        let digest = Sha256::digest(&body);
        let etag = format!(
            "\"{}\"",
            digest
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let picture = PictureRecord {
            key: format!("pictures/{me}/{}.{extension}", uuid::Uuid::now_v7()),
            content_type: content_type.to_owned(),
            etag,
            width: i64::try_from(size.width).unwrap_or(i64::MAX),
            height: i64::try_from(size.height).unwrap_or(i64::MAX),
            size: i64::try_from(body.len()).unwrap_or(i64::MAX),
        };

        state.pictures.put(&picture.key, body, content_type).await?;
        let old = match state.store.set_picture(me, &picture).await {
            Ok(old) => old,
            Err(error) => {
                if let Err(cleanup) = state.pictures.delete(&picture.key).await {
                    tracing::warn!(error = %cleanup, "an unused picture is left for the sweep");
                }
                return Err(error.into());
            }
        };
        let updated = crate::domain::events::Event::UserUpdated { user_id: me };
        state.events.publish(updated).await;
        if let Some(old) = old
            && let Err(error) = state.pictures.delete(&old).await
        {
            tracing::warn!(%error, "a replaced picture is left for the sweep");
        }
        Ok(PutPictureResponse::Ok(Picture {
            url: picture_url(me).into(),
            content_type: content_type
                .parse::<PictureContentType>()
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?,
            width,
            height,
            size: u64::try_from(picture.size)
                .ok()
                .and_then(NonZeroU64::new)
                .ok_or(not_an_image_size())?,
        }))
    }

    async fn get_picture(
        &self,
        _request: &poem::Request,
        _auth: GetPictureAuth<Self>,
        params: crate::generated::types::GetPictureParams,
    ) -> Result<GetPictureResponse> {
        let state = &*self.state;
        let user = state
            .profiles
            .user(&state.store, *params.user_id)
            .await?
            .ok_or(super::UNKNOWN_USER)?;
        let picture = user
            .picture
            .clone()
            .ok_or(ApiError::NotFound("This user has no picture."))?;
        if let Some(location) = state.pictures.presigned_get(&picture.key).await? {
            return Ok(GetPictureResponse::TemporaryRedirect { location });
        }
        let current = params.if_none_match.as_deref().is_some_and(|tags| {
            tags.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag == picture.etag)
        });
        if current {
            return Ok(GetPictureResponse::NotModified { etag: picture.etag });
        }
        let bytes = state.pictures.get(&picture.key).await?.ok_or_else(|| {
            tracing::error!(key = picture.key, "a user's picture object is missing");
            ApiError::NotFound("This user has no picture.")
        })?;
        Ok(GetPictureResponse::Ok {
            content_type: picture.content_type,
            body: poem::Body::from_vec(bytes),
            etag: picture.etag,
            cache_control: CACHE_CONTROL.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn images_are_told_by_their_first_bytes() {
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\nrest").map(|t| t.0),
            Some("image/png")
        );
        assert_eq!(sniff(b"\xff\xd8\xff\xe0").map(|t| t.0), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a..").map(|t| t.0), Some("image/gif"));
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WEBPVP8 ").map(|t| t.0),
            Some("image/webp")
        );
        assert_eq!(sniff(b"<svg xmlns"), None);
        assert_eq!(sniff(b""), None);
    }
}
