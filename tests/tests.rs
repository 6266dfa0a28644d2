//! The integration tests, one binary (modules under it/). Helpers are `pub` for the test
//! modules that share them; no item here is reachable from outside, and none needs to be.
#![allow(unreachable_pub)]

mod it;
