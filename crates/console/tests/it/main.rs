//! Integration tests of the console: HTTP-level (the router in-process) and a real
//! headless Chromium.

mod chromium;
mod http;
