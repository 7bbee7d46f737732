//! inetloop: a readiness-loop network server and its clients.

pub mod endpoint;
pub mod http;
