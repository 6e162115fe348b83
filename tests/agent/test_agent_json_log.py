"""The agent process writes one JSON log stream (FFmpeg's lines included) and its final line counts every event
it published, the ``end`` events of the shutdown included (issue #11)."""

from __future__ import annotations

import json
import uuid

import pytest

from edgesight.wire import Topics, decode_event

from .test_agent_e2e import AgentProc, agent_yaml, free_port, read_topic


@pytest.mark.timeout(300)
def test_agent_stderr_is_json_and_final_count_includes_end_events(tmp_path, stack, model_dir, media_dir):
    agent_id = f"js-{uuid.uuid4().hex[:6]}"
    prefix = f"t{uuid.uuid4().hex[:8]}"
    port = free_port()
    cfg = agent_yaml(
        tmp_path,
        stack,
        agent_id=agent_id,
        prefix=prefix,
        metrics_port=port,
        spool=tmp_path / "spool",
        cameras=[
            {"id": "corrupt", "url": str(media_dir / "corrupt.avi"), "loop": True, "target_fps": 5, "realtime": False}
        ],
    )
    agent = AgentProc(cfg, port, stack, model_dir, tmp_path / "agent.log")
    try:
        agent.wait(lambda s: s["pipeline"]["events_published"] >= 5, 150, "events from the corrupt file")
        # the corrupt part of the file (20 %..70 % of it) has been decoded at least once
        agent.wait(lambda s: s["capture"]["corrupt"]["frames_read"] >= 560, 150, "the corrupt part decoded")
    finally:
        code = agent.terminate()
    assert code == 0, agent.tail()
    lines = [line for line in agent.log.read_text(errors="replace").splitlines() if line.strip()]
    docs = []
    for line in lines:
        try:
            docs.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line[:300]!r}") from None
    assert any(d.get("component") == "ffmpeg" for d in docs), "FFmpeg's complaints should be in the stream"
    final = [d for d in docs if d.get("msg") == "agent stopped"]
    assert len(final) == 1 and final[0]["flushed"], final
    events = [
        e
        for e in (decode_event(m.value) for m in read_topic(stack.config.kafka, Topics(prefix).detections, min_count=5))
        if e.agent_id == agent_id
    ]
    assert any(e.kind == "end" for e in events)
    assert final[0]["events"] == len({e.event_id for e in events}), (final[0], len(events))
