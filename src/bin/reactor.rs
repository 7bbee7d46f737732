//! Placeholder so the manifest parses on the `http-client` branch.
//!
//! `Cargo.toml` names `reactor` as `default-run`, and cargo refuses a manifest whose
//! default-run target does not exist. The real reactor is written on another branch; when the
//! branches merge, that file replaces this one.

fn main() {
    eprintln!("reactor: not built on this branch (placeholder)");
    std::process::exit(1);
}
