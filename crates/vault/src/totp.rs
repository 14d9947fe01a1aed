//! TOTP second factor (being written).
