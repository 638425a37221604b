//! infer-engine
