"""``patchd agent``: the service that keeps this endpoint patched by its policy."""

from __future__ import annotations

from patchd.cli.main import Invocation


def run(invocation: Invocation) -> int:
    from patchd.agent.service import Agent
    from patchd.config import load_config
    from patchd.paths import default_state_dir
    from patchd.target import Target

    config = load_config(invocation.config_path)
    if config.log_format == "json":
        from patchd.cli.logsetup import setup_logging

        setup_logging(debug=invocation.debug, json_lines=True)
    state_dir = invocation.state_dir or config.state_dir or default_state_dir()
    agent = Agent(invocation.config_path, config, Target.at(invocation.root), state_dir)
    return agent.run(once=invocation.args.once)
