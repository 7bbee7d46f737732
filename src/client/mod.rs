//! The client wing: blocking sockets with timeouts (the lab's `Endpoint`), the clients' shared
//! command-line conventions, and an HTTP/1.x client. Nothing here uses the event loop.

pub mod cli;
pub mod endpoint;
pub mod http;
