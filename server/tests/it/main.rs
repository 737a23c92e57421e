//! Pier's integration tests, one binary: each module drives the real router (and, where it says
//! so, real dockerd, HAProxy, pebble and the local registry). One binary links the whole server
//! once instead of once per file, which keeps the target directory and CI's link time small.

mod common;

mod account;
mod admin;
mod api;
mod api_apps;
mod api_domains;
mod api_volumes;
mod assets;
mod audit;
mod auth;
mod backups;
mod certs;
mod disaster;
mod engine;
mod metrics;
mod nodes;
mod notify;
mod pages;
mod proxy;
mod real_apps;
mod replicas;
mod routing;
mod swarm_apps;
mod swarm_services;
mod tags;
mod two_factor;
