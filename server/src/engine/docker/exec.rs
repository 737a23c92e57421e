//! A command run inside a container, with its input and output streamed.

use bollard::{container::LogOutput, exec::StartExecResults, models::ExecConfig};
use futures_util::StreamExt;

use pier_core::runtime::{keep_tail, ExecInput, ExecOutcome, ExecOutput, RuntimeError};

use super::{map_err, DockerRuntime};

impl DockerRuntime {
    pub(super) async fn exec_in(
        &self,
        id: &str,
        cmd: &[String],
        stdin: Option<ExecInput>,
        mut stdout: ExecOutput,
    ) -> Result<ExecOutcome, RuntimeError> {
        use tokio::io::AsyncWriteExt;
        let docker = self.docker()?;
        let config = ExecConfig {
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let exec = docker.create_exec(id, config).await.map_err(map_err)?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = docker.start_exec(&exec.id, None).await.map_err(map_err)?
        else {
            return Err(RuntimeError::Failed("the command did not attach".into()));
        };
        let io = |e: std::io::Error| RuntimeError::Failed(e.to_string());
        // Input and output at once: a command that writes while it reads must not wait on us.
        let feed = async {
            if let Some(mut from) = stdin {
                // A command that exits before reading everything closes its end: its exit
                // status says what went wrong, not the broken pipe.
                let _ = tokio::io::copy(&mut from, &mut input).await;
            }
            // Closing our half of the connection is the command's end of input.
            let _ = input.shutdown().await;
        };
        let drain = async {
            let mut stderr = Vec::new();
            let mut written = 0u64;
            while let Some(chunk) = output.next().await {
                match chunk.map_err(map_err)? {
                    LogOutput::StdOut { message } => {
                        stdout.write_all(&message).await.map_err(io)?;
                        written += message.len() as u64;
                    }
                    LogOutput::StdErr { message } => keep_tail(&mut stderr, &message),
                    _ => {}
                }
            }
            stdout.shutdown().await.map_err(io)?;
            Ok::<_, RuntimeError>((stderr, written))
        };
        let ((), drained) = tokio::join!(feed, drain);
        let (stderr, stdout_bytes) = drained?;
        // The stream ends as the process exits; its status may take a moment to be recorded.
        for _ in 0..50 {
            let state = docker.inspect_exec(&exec.id).await.map_err(map_err)?;
            if state.running != Some(true) {
                return Ok(ExecOutcome {
                    exit_code: state.exit_code.unwrap_or(-1),
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                    stdout_bytes,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(RuntimeError::Failed(
            "the command's output ended but it did not exit".into(),
        ))
    }
}
