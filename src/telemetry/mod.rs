//! What the service tells its operators: logs (`logs`: the subscriber and
//! the per-request root span) and metrics (`metrics`: the names every
//! counter and histogram goes by, the recorder, the request middleware).

pub mod logs;
pub mod metrics;

pub use logs::{RequestSpan, init, record_on_request};
