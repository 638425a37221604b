//! Reference ops (stub).
