//! An S3-compatible server of the test's own (s3s-fs over a directory, on a free loopback
//! port), stopped when dropped and startable again on the same port and data.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const ACCESS_KEY: &str = "pier-test-access";
pub const SECRET_KEY: &str = "pier-test-secret-key-1";

pub struct S3 {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl S3 {
    pub fn start() -> S3 {
        let port = super::free_addr().port();
        let dir = std::env::temp_dir().join(format!("pier-test-s3-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = S3 {
            port,
            dir,
            child: None,
        };
        s.up();
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) and waits until it answers.
    pub fn up(&mut self) {
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs (scripts/setup.sh --test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (the data stays).
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
