//! The server wing: the loop and the plumbing. Everything here knows about `mio`, sockets and
//! tokens; nothing here knows what a protocol says.

pub mod access;
pub mod activation;
pub mod config;
pub mod connection;
pub mod descriptors;
pub mod exposition;
pub mod handler;
pub mod listen;
pub mod listener;
pub mod metrics;
pub mod per_source;
pub mod privileges;
pub mod proxy_header;
pub mod rate_limit;
pub mod reactor;
pub mod readiness;
pub mod timer;
pub mod totals;
pub mod trace;
pub mod udp;
