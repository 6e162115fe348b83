"""The EdgeSight wire contract (see :mod:`edgesight.wire.models`)."""
from .codec import (WireError, event_key, decode_ack, decode_command, decode_event, decode_keyframe, decode_status, dumps,
                    encode_event, encode_keyframe, json_schemas)
from .models import (AgentStatus, Box, CameraStatus, ControlAck, ControlCommand, Crossing, DetectionEvent, EventKind,
                     FrameSize, KeyframeMeta, KeyframeReason, KeyframeRef, ModelRef, NormBox, SpoolStatus,
                     make_event_id)
from .topics import Topics

__all__ = [n for n in dir() if not n.startswith("_")]
