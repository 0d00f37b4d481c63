//! Pictures in a directory: each object a file, written to a temporary name and renamed,
//! so that a reader never sees half a picture.

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::future::BoxFuture;

use super::{BlobError, BlobStore, Listed};

pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The file of a key; keys are the server's own, so they hold no `..`.
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

impl BlobStore for LocalDir {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        _content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.path(key);
            let dir = path.parent().context("a key with no directory")?;
            tokio::fs::create_dir_all(dir)
                .await
                .context("creating the picture directory")?;
            let temp = path.with_extension("partial");
            tokio::fs::write(&temp, &bytes)
                .await
                .context("writing a picture")?;
            tokio::fs::rename(&temp, &path)
                .await
                .context("moving a picture into place")?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            match tokio::fs::read(self.path(key)).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(anyhow::Error::from(error)
                    .context("reading a picture")
                    .into()),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(key)).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(anyhow::Error::from(error)
                        .context("deleting a picture")
                        .into())
                }
                _ => Ok(()),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, BlobError>> {
        Box::pin(async move {
            let root = self.root.clone();
            let prefix = prefix.to_owned();
            tokio::task::spawn_blocking(move || walk(&root, &root.join(&prefix)))
                .await
                .context("listing pictures")?
                .map_err(|e| BlobError(e.context("listing pictures")))
        })
    }

    fn presigned_get<'a>(
        &'a self,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BlobError>> {
        Box::pin(async { Ok(None) })
    }
}

fn walk(root: &Path, dir: &Path) -> anyhow::Result<Vec<Listed>> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(found);
    };
    for entry in entries {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            found.extend(walk(root, &entry.path())?);
        } else if let Ok(relative) = entry.path().strip_prefix(root) {
            found.push(Listed {
                key: relative.to_string_lossy().into_owned(),
                modified: metadata.modified()?,
            });
        }
    }
    Ok(found)
}
