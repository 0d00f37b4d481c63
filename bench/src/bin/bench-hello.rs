//! The baseline: a bare poem "hello world" on the same machine, so that every scenario is
//! reported as a ratio to what the HTTP stack alone can do here, in the same run.

use poem::{Route, Server, get, handler, listener::TcpListener};

#[handler]
fn hello() -> &'static str {
    "hello world"
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    Server::new(TcpListener::bind(bind))
        .run(Route::new().at("/", get(hello)))
        .await
}
