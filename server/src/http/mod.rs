//! HTTP plumbing that knows no service: errors as Problem documents, request ids and
//! per-request telemetry, the client's address, compression, ETags, request limits, security headers, the
//! serving build's version header, page tokens, the Swagger UI page and the connection
//! loop. Services may use it (they decide API outcomes such as a 429); it uses only the
//! infrastructure below it.

pub mod access_log;
pub mod client_address;
pub mod compression;
pub mod docs;
pub mod error;
pub mod etag;
pub mod pages;
pub mod pagination;
pub mod request_id;
pub mod request_limits;
pub mod security_headers;
pub mod serve;
pub mod telemetry;
pub mod version;
