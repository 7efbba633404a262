//! End-to-end tests through nginx on the local stack.
