#!/bin/sh
# Bake the default bundle's backbone into $GUARDRAIL_CACHE (GGUF chunks -> converted safetensors, once) and
# prove the image can redact: the build fails if the sample comes back unredacted.
set -eu
: "${GUARDRAIL_CACHE:?set GUARDRAIL_CACHE to the cache folder to fill}"
sample='Call Ana Silva at +1 415 555 0100 or write to ana.silva@example.com'
out=$(printf '%s\n' "$sample" | guardrail redact --bundle "${GUARDRAIL_BUNDLE:-gemma-3-270m}" --device cpu)
case "$out" in
  *ana.silva@example.com*|*"555 0100"*) echo "warm-cache: the sample was not redacted" >&2; exit 1 ;;
esac
echo "warm-cache: model cached in $GUARDRAIL_CACHE; sample redacted"
