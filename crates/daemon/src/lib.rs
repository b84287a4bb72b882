//! holdfast: library side of the `holdfast` binary (host glue shared with tests).

pub mod host;
