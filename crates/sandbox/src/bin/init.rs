//! The sandbox init as a program of its own, for the crate's tests and for embedders
//! that do not re-execute themselves (`conductor` runs the same code as its hidden
//! `__sandbox-init` subcommand).

fn main() {
    conductor_sandbox::init_main()
}
