//! End-to-end tests through nginx on the local stack (scripts/local-stack.sh):
//! real MySQL 9.7, real nginx 1.30, real app processes, real sockets.
//! Each test brings up its own stack and purges it on drop, pass or fail;
//! stacks share addresses, so tests take turns (see `support::Stack`).

mod connections;
mod counting;
mod group;
mod hostile;
mod http_client;
mod metrics;
mod outages;
mod privileges;
mod raw;
mod reapply;
mod shutdown;
mod slow_readers;
mod startup;
mod stickiness;
mod support;
