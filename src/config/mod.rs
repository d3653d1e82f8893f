pub mod duration;
pub mod env;
pub mod error;
pub mod raw;
