//! holdfast: library side of the `holdfast` binary.

pub mod control;
pub mod dump;
pub mod guardian;
pub mod host;
pub mod logging;
pub mod lvs;
pub mod metrics;
pub mod nlhub;
pub mod plan;
pub mod probes;
pub mod run;
pub mod rx;
pub mod script;
pub mod systemd;
pub mod track_file;
pub mod track_process;
