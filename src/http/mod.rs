//! Pure HTTP/1.1 (RFC 9110, RFC 9112): parsing and admission of request heads, and the
//! encoding of response heads.
//!
//! No I/O, no clock reads (the time is a parameter), no allocation per request: functions
//! borrow their input and write into buffers the caller owns. Never imports `fs`, `server`
//! or `uring`.

#![forbid(unsafe_code)]

pub mod conditional;
pub mod date;
pub mod etag;
pub mod negotiate;
pub mod range;
pub mod request;
pub mod response;
pub(crate) mod status;

pub use conditional::{Preconditions, Validators};
pub use date::HttpDate;
pub use etag::EntityTag;
pub use negotiate::Coding;
pub use range::{RangeOutcome, RangeSet};
pub use request::{Fields, Method, Reject, Request, Version};
pub use response::{Connection, FileFields};
pub use status::Status;
