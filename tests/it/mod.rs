//! Integration tests for fserve: every test starts its own server (or the real
//! binary) on 127.0.0.1 port 0 over a fresh temporary root, and speaks raw
//! HTTP/1.1 over std::net::TcpStream.

mod support;

mod bodies;
mod cli;
mod content_types;
mod directories;
mod dotfiles;
mod errors;
mod headers;
mod keepalive;
mod lifecycle;
mod paths;
mod pipelining;
mod timeouts;
mod traversal;
