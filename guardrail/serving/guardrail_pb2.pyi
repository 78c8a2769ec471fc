from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Span(_message.Message):
    __slots__ = ("start", "end", "label", "score", "start_byte", "end_byte", "source", "features")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    START_BYTE_FIELD_NUMBER: _ClassVar[int]
    END_BYTE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    label: str
    score: float
    start_byte: int
    end_byte: int
    source: str
    features: _containers.RepeatedCompositeFieldContainer[Feature]
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ..., start_byte: _Optional[int] = ..., end_byte: _Optional[int] = ..., source: _Optional[str] = ..., features: _Optional[_Iterable[_Union[Feature, _Mapping]]] = ...) -> None: ...

class Feature(_message.Message):
    __slots__ = ("latent", "activation", "contribution", "description")
    LATENT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    latent: int
    activation: float
    contribution: float
    description: str
    def __init__(self, latent: _Optional[int] = ..., activation: _Optional[float] = ..., contribution: _Optional[float] = ..., description: _Optional[str] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("texts", "labels", "explain")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    explain: bool
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., explain: _Optional[bool] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("spans",)
    SPANS_FIELD_NUMBER: _ClassVar[int]
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    def __init__(self, spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Detection]
    def __init__(self, results: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ...) -> None: ...

class RedactRequest(_message.Message):
    __slots__ = ("texts", "operator", "labels", "key", "seal", "mapping", "scope", "keep_placeholders")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SEAL_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEEP_PLACEHOLDERS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    operator: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    key: bytes
    seal: bool
    mapping: str
    scope: str
    keep_placeholders: bool
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., operator: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., key: _Optional[bytes] = ..., seal: _Optional[bool] = ..., mapping: _Optional[str] = ..., scope: _Optional[str] = ..., keep_placeholders: _Optional[bool] = ...) -> None: ...

class Redacted(_message.Message):
    __slots__ = ("text", "spans")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    text: str
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    def __init__(self, text: _Optional[str] = ..., spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ...) -> None: ...

class RedactResponse(_message.Message):
    __slots__ = ("results", "mapping")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Redacted]
    mapping: str
    def __init__(self, results: _Optional[_Iterable[_Union[Redacted, _Mapping]]] = ..., mapping: _Optional[str] = ...) -> None: ...

class StreamOptions(_message.Message):
    __slots__ = ("operator", "labels", "key", "seal", "mapping", "scope", "keep_placeholders")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SEAL_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEEP_PLACEHOLDERS_FIELD_NUMBER: _ClassVar[int]
    operator: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    key: bytes
    seal: bool
    mapping: str
    scope: str
    keep_placeholders: bool
    def __init__(self, operator: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., key: _Optional[bytes] = ..., seal: _Optional[bool] = ..., mapping: _Optional[str] = ..., scope: _Optional[str] = ..., keep_placeholders: _Optional[bool] = ...) -> None: ...

class RedactStreamRequest(_message.Message):
    __slots__ = ("options", "chunk")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    options: StreamOptions
    chunk: str
    def __init__(self, options: _Optional[_Union[StreamOptions, _Mapping]] = ..., chunk: _Optional[str] = ...) -> None: ...

class RedactStreamResponse(_message.Message):
    __slots__ = ("text", "spans", "consumed", "final", "mapping")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    text: str
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    consumed: int
    final: bool
    mapping: str
    def __init__(self, text: _Optional[str] = ..., spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., consumed: _Optional[int] = ..., final: _Optional[bool] = ..., mapping: _Optional[str] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("texts", "mapping", "scope", "keep_unknown")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEEP_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    mapping: str
    scope: str
    keep_unknown: bool
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., mapping: _Optional[str] = ..., scope: _Optional[str] = ..., keep_unknown: _Optional[bool] = ...) -> None: ...

class Restored(_message.Message):
    __slots__ = ("text", "restored", "unknown")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    text: str
    restored: int
    unknown: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, text: _Optional[str] = ..., restored: _Optional[int] = ..., unknown: _Optional[_Iterable[str]] = ...) -> None: ...

class RestoreResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Restored]
    def __init__(self, results: _Optional[_Iterable[_Union[Restored, _Mapping]]] = ...) -> None: ...

class RestoreOptions(_message.Message):
    __slots__ = ("mapping", "scope", "keep_unknown")
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEEP_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    mapping: str
    scope: str
    keep_unknown: bool
    def __init__(self, mapping: _Optional[str] = ..., scope: _Optional[str] = ..., keep_unknown: _Optional[bool] = ...) -> None: ...

class RestoreStreamRequest(_message.Message):
    __slots__ = ("options", "chunk")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    options: RestoreOptions
    chunk: str
    def __init__(self, options: _Optional[_Union[RestoreOptions, _Mapping]] = ..., chunk: _Optional[str] = ...) -> None: ...

class RestoreStreamResponse(_message.Message):
    __slots__ = ("text", "final", "restored", "unknown")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    text: str
    final: bool
    restored: int
    unknown: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, text: _Optional[str] = ..., final: _Optional[bool] = ..., restored: _Optional[int] = ..., unknown: _Optional[_Iterable[str]] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("bundle", "backbone", "layer", "labels", "version", "operators", "max_texts", "max_text_chars", "max_message_bytes", "device", "dtype", "runtime", "probe", "patterns", "why", "cpu", "vault_key_id", "explanations")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATORS_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    VAULT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    bundle: str
    backbone: str
    layer: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    version: str
    operators: _containers.RepeatedScalarFieldContainer[str]
    max_texts: int
    max_text_chars: int
    max_message_bytes: int
    device: str
    dtype: str
    runtime: str
    probe: str
    patterns: bool
    why: str
    cpu: str
    vault_key_id: str
    explanations: bool
    def __init__(self, bundle: _Optional[str] = ..., backbone: _Optional[str] = ..., layer: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ..., operators: _Optional[_Iterable[str]] = ..., max_texts: _Optional[int] = ..., max_text_chars: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., runtime: _Optional[str] = ..., probe: _Optional[str] = ..., patterns: _Optional[bool] = ..., why: _Optional[str] = ..., cpu: _Optional[str] = ..., vault_key_id: _Optional[str] = ..., explanations: _Optional[bool] = ...) -> None: ...
