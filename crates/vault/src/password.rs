//! Password hashing and policy (being written).
