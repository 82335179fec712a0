use super::*;

mod handler;
mod listener;
