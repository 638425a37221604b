//! Tool calls: rendering tools into prompts and parsing calls back out.
