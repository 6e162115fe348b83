"""The agent's control commands: one handler per action, dispatched through :data:`HANDLERS`.

A handler takes the running :class:`~edge_agent.agent.Agent` and the decoded command
(a model of :mod:`edgesight.wire.models`) and returns the ack's ``result``; it raises
:class:`~edge_agent.control.mqtt.CommandError` when the command was understood but
cannot be carried out (unknown camera, invalid zones, unbuilt model variant...). The
control plane turns both into the ack (see :mod:`edge_agent.control.mqtt`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edge_agent.config import AgentCamera
from edge_agent.control.mqtt import CommandError
from edge_agent.inference.engine import InferenceEngine
from edge_agent.tracking.settings import LineConfig, ZoneConfig
from edgesight.config import format_validation_error
from edgesight.wire.models import (
    AddCamera,
    Preview,
    RemoveCamera,
    RestartCamera,
    SetFps,
    SetLines,
    SetModelVariant,
    SetZones,
    Snapshot,
    StartCamera,
    StopCamera,
    iso_ms,
)

if TYPE_CHECKING:
    from edge_agent.agent import Agent

Result = dict[str, Any]
Handler = Callable[["Agent", Any], Result]


def dispatch(agent: Agent, cmd: Any) -> Result:
    """Run the handler of ``cmd.action``."""
    handler = HANDLERS.get(cmd.action)
    if handler is None:
        raise CommandError(f"action {cmd.action!r} is not supported by this agent")
    return handler(agent, cmd)


def _invalid(what: str, e: ValidationError, at: str = "") -> CommandError:
    """``invalid <what>: <key>: <problem>; ...``, each key under ``at`` (``zones[2]``) when given."""
    problems = format_validation_error(e)
    if at:
        problems = [(at if k == "(top level)" else f"{at}.{k}", m) for k, m in problems]
    return CommandError(f"invalid {what}: " + "; ".join(f"{k}: {m}" for k, m in problems))


def _camera(agent: Agent, camera_id: str) -> AgentCamera:
    cam = agent.cameras.get(camera_id)
    if cam is None:
        raise CommandError(
            f"unknown camera {camera_id!r}; this agent has: {', '.join(sorted(agent.cameras)) or 'none'}"
        )
    return cam


def add_camera(agent: Agent, cmd: AddCamera) -> Result:
    """Validated like the config file, then its source is checked against ``control.allowed_sources``."""
    try:
        cam = AgentCamera.model_validate(cmd.camera)
    except ValidationError as e:
        raise _invalid("camera", e) from None
    if cam.id in agent.cameras:
        raise CommandError(f"camera {cam.id!r} already exists")
    limit = agent.config.control.max_cameras
    if len(agent.cameras) >= limit:
        raise CommandError(f"this agent has {len(agent.cameras)} cameras; at most {limit} (control.max_cameras)")
    try:
        agent.config.control.allowed_sources.check(cam)
    except ValueError as e:
        raise CommandError(f"camera source refused: {e}") from None
    agent.cameras[cam.id] = cam
    agent.supervisor.add_camera(cam.capture())
    return {"camera_id": cam.id, "state": "starting"}


def remove_camera(agent: Agent, cmd: RemoveCamera) -> Result:
    _camera(agent, cmd.camera_id)
    agent.supervisor.remove_camera(cmd.camera_id)
    ended = agent.pipeline.end_camera(cmd.camera_id)
    del agent.cameras[cmd.camera_id]
    agent.feed.forget(cmd.camera_id)
    if agent.control:
        agent.control.clear_camera_status(cmd.camera_id)
    return {"camera_id": cmd.camera_id, "removed": True, "tracks_ended": ended}


def _run_camera(agent: Agent, camera_id: str, action: Callable[[str], None], *, end_tracks: bool) -> Result:
    _camera(agent, camera_id)
    action(camera_id)
    ended = agent.pipeline.end_camera(camera_id) if end_tracks else 0
    st = agent.supervisor.status()[camera_id]
    agent.camera_state_changed(camera_id)  # retained status follows at once
    return {"camera_id": camera_id, "state": str(st.state), "tracks_ended": ended}


def start_camera(agent: Agent, cmd: StartCamera) -> Result:
    return _run_camera(agent, cmd.camera_id, agent.supervisor.start_camera, end_tracks=False)


def stop_camera(agent: Agent, cmd: StopCamera) -> Result:
    return _run_camera(agent, cmd.camera_id, agent.supervisor.stop_camera, end_tracks=True)


def restart_camera(agent: Agent, cmd: RestartCamera) -> Result:
    return _run_camera(agent, cmd.camera_id, agent.supervisor.restart_camera, end_tracks=True)


def set_fps(agent: Agent, cmd: SetFps) -> Result:
    cam = _camera(agent, cmd.camera_id)
    agent.supervisor.set_fps(cmd.camera_id, cmd.fps)
    agent.cameras[cmd.camera_id] = cam.model_copy(update={"target_fps": cmd.fps})
    return {"camera_id": cmd.camera_id, "target_fps": cmd.fps}


def set_model_variant(agent: Agent, cmd: SetModelVariant) -> Result:
    cfg = agent.config.inference.model_copy(update={"variant": cmd.variant})
    try:
        engine = InferenceEngine(cfg)
    except Exception as e:  # noqa: BLE001 - e.g. that variant is not built: the running engine stays
        raise CommandError(f"cannot switch to variant {cmd.variant!r}: {e}") from None
    agent.replace_engine(engine)
    return {"variant": engine.variant, "providers": engine.active_providers}


def _set_geometry(
    agent: Agent, camera_id: str, key: str, model: type[ZoneConfig] | type[LineConfig], raw: list[dict[str, Any]]
) -> Result:
    """Replace a camera's zones or lines; its live tracks end, the next frame rebuilds tracking."""
    cam = _camera(agent, camera_id)
    items = []
    for n, x in enumerate(raw):
        try:
            items.append(model.model_validate(x))
        except ValidationError as e:
            raise _invalid(key, e, at=f"{key}[{n}]") from None
    try:
        new = AgentCamera.model_validate({**cam.model_dump(by_alias=False), key: [i.model_dump() for i in items]})
    except ValidationError as e:
        raise _invalid(key, e) from None
    agent.cameras[camera_id] = new
    ended = agent.pipeline.end_camera(camera_id)
    agent.camera_state_changed(camera_id)  # the retained camera status reports the new geometry at once
    return {"camera_id": camera_id, key: [i.name for i in items], "tracks_ended": ended}


def set_zones(agent: Agent, cmd: SetZones) -> Result:
    return _set_geometry(agent, cmd.camera_id, "zones", ZoneConfig, cmd.zones)


def set_lines(agent: Agent, cmd: SetLines) -> Result:
    return _set_geometry(agent, cmd.camera_id, "lines", LineConfig, cmd.lines)


def snapshot(agent: Agent, cmd: Snapshot) -> Result:
    _camera(agent, cmd.camera_id)
    frame = agent.supervisor.latest(cmd.camera_id)
    if frame is None:
        raise CommandError(
            f"camera {cmd.camera_id!r} has no frame yet (state: {agent.supervisor.status()[cmd.camera_id].state})"
        )
    shot = agent.keyframes.snapshot(cmd.camera_id, frame.image, frame.ts, frame.seq)
    for meta, jpeg in shot.keyframes:
        agent.publisher.publish_keyframe(meta, jpeg)
    agent.feed.preview_once(cmd.camera_id)  # and one preview on the camera's preview topic
    meta = shot.keyframes[0][0]
    # keyframe_id is what resolves (cloud-ops warehouse keyframe); object_key is the keyframe's record key.
    return {
        "camera_id": cmd.camera_id,
        "keyframe_id": meta.keyframe_id,
        "object_key": meta.object_key,
        "bytes": meta.size,
    }


def preview(agent: Agent, cmd: Preview) -> Result:
    """Publish the camera's preview every ``control.preview_interval_s`` for ``cmd.seconds`` (see edge_agent.feed)."""
    _camera(agent, cmd.camera_id)
    until = agent.feed.lease(cmd.camera_id, cmd.seconds)
    return {
        "camera_id": cmd.camera_id,
        "until": iso_ms(until),
        "interval_s": agent.config.control.preview_interval_s,
    }


HANDLERS: dict[str, Handler] = {
    "add_camera": add_camera,
    "remove_camera": remove_camera,
    "start_camera": start_camera,
    "stop_camera": stop_camera,
    "restart_camera": restart_camera,
    "set_fps": set_fps,
    "set_model_variant": set_model_variant,
    "set_zones": set_zones,
    "set_lines": set_lines,
    "snapshot": snapshot,
    "preview": preview,
}
