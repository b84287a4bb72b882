//! `holdfast-guardian`: the crash guardian `holdfast run` starts beside itself (see
//! `holdfast::guardian`). Its own small executable, so that the process that lives as long
//! as the daemon maps only the code it runs; `holdfast guardian` is the same thing.

fn main() -> std::process::ExitCode {
    holdfast::guardian::main(std::env::args().nth(1).as_deref() == Some("--detail"))
}
