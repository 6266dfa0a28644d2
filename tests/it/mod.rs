//! Integration tests for fserve: every test starts its own server (or the real
//! binary) on 127.0.0.1 port 0 over a fresh temporary root, and speaks raw
//! HTTP/1.1 over std::net::TcpStream.

mod support;

mod bodies;
mod caching;
mod cli;
mod cold;
mod compression;
mod conditional;
mod content_types;
mod directories;
mod dist;
mod dotfiles;
mod drain;
mod engines;
mod errors;
mod hardening;
mod headers;
mod hostile;
mod keepalive;
mod lifecycle;
mod memory_file;
mod observability;
mod paths;
mod pipeline;
mod pipelining;
mod precompressed;
mod ranges;
mod real_clients;
mod site_options;
mod timeouts;
mod traversal;
