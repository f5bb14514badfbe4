"""``asr``: transcribe files or stdin with a streaming ASR server, list its models.

asr transcribe call.wav meeting.flac --server asr.internal:50051
arecord -f S16_LE -r 16000 -c 1 | asr transcribe - --rate 16000
asr transcribe call.wav --json | jq .text
asr models
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

import grpc
from rich.console import Console

from asr_client.api.asr.v1 import asr_pb2
from asr_client.audio import (
    BYTES_PER_SAMPLE,
    chunk_size_bytes,
    paced,
    read_audio_file,
    read_stream_chunks,
    split_chunks,
)
from asr_client.client import DEFAULT_SERVER, AsrClient, recognition_config
from asr_client.output import print_json_stream, print_models, print_text_stream


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """TLS and bearer-token options, read by ``_connect``."""
    parser.add_argument(
        "--tls", action="store_true", help="use TLS, verifying the server against the system roots (or --ca-file)"
    )
    parser.add_argument("--ca-file", metavar="FILE", help="PEM CA certificate(s) to verify the server (implies --tls)")
    parser.add_argument("--cert-file", metavar="FILE", help="PEM client certificate for mutual TLS (with --key-file)")
    parser.add_argument("--key-file", metavar="FILE", help="PEM private key of --cert-file")
    parser.add_argument(
        "--token",
        default=os.environ.get("ASR_TOKEN"),
        metavar="TOKEN",
        help="bearer token sent with every call (default: $ASR_TOKEN; prefer it: other users see arguments in ps)",
    )


def _connect(args: argparse.Namespace) -> AsrClient:
    """The client of --server with the TLS and token options; exits with a message if they are unusable."""
    try:
        return AsrClient(
            args.server,
            tls=args.tls,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            token=args.token or None,
        )
    except (OSError, ValueError) as error:
        raise SystemExit(f"asr: {error}") from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=os.environ.get("ASR_SERVER", DEFAULT_SERVER),
        metavar="HOST:PORT",
        help="server address (default: $ASR_SERVER or %(default)s)",
    )
    common.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    _add_connection_arguments(common)

    parser = argparse.ArgumentParser(prog="asr", description="Streaming speech recognition client.")
    commands = parser.add_subparsers(dest="command", required=True)

    transcribe = commands.add_parser(
        "transcribe",
        parents=[common],
        help="transcribe audio files (any format soundfile reads) or raw PCM on stdin",
        description="Stream audio files to the server and print their transcripts. On a terminal, "
        "partial results update in place and final results are printed line by line. With --json, "
        "one JSON object per server response, then per file a line whose 'text' holds the whole "
        "final transcript.",
    )
    transcribe.add_argument("files", nargs="+", metavar="FILE", help="audio file, or - for raw LINEAR16 on stdin")
    pace = transcribe.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="send audio at real-time speed")
    pace.add_argument("--speed", type=float, metavar="X", help="send audio at X times real time")
    transcribe.add_argument(
        "--chunk-ms", type=float, default=100.0, metavar="N", help="audio per request (default: %(default)g)"
    )
    transcribe.add_argument("--languages", metavar="en,de", help="comma-separated languages the speech may be in")
    transcribe.add_argument(
        "--multi-talker", action="store_true", help="separate overlapping speakers into virtual channels"
    )
    transcribe.add_argument("--model", default="", help="model name (default: the server's default model)")
    transcribe.add_argument("--words", action="store_true", help="request word time offsets")
    transcribe.add_argument(
        "--rate",
        type=int,
        default=16000,
        metavar="R",
        help="sample rate of raw PCM on stdin (default: %(default)d)",
    )
    transcribe.add_argument(
        "--channels", type=int, default=1, help="channels of raw PCM on stdin (default: %(default)d)"
    )
    transcribe.add_argument("--timeout", type=float, metavar="S", help="deadline per file in seconds")

    commands.add_parser("models", parents=[common], help="list the server's models")
    return parser


def _audio_source(path: str, args: argparse.Namespace) -> tuple[Iterator[bytes], int, int]:
    """(paced chunks, sample rate, channels) of a file or of stdin ("-")."""
    speed = 1.0 if args.realtime else args.speed
    if path == "-":
        rate, channels = args.rate, args.channels
        chunk_bytes = chunk_size_bytes(rate, channels, args.chunk_ms)
        chunks: Iterator[bytes] = read_stream_chunks(sys.stdin.buffer, chunk_bytes)
    else:
        audio = read_audio_file(path)
        rate, channels = audio.sample_rate, audio.channels
        chunks = split_chunks(audio.data, chunk_size_bytes(rate, channels, args.chunk_ms))
    return paced(chunks, rate * channels * BYTES_PER_SAMPLE, speed), rate, channels


def _transcribe(args: argparse.Namespace, console: Console, errors: Console) -> int:
    languages = [code.strip() for code in (args.languages or "").split(",") if code.strip()]
    status = 0
    with _connect(args) as client:
        for path in args.files:
            name = "<stdin>" if path == "-" else path
            try:
                chunks, rate, channels = _audio_source(path, args)
            except (OSError, RuntimeError) as error:  # soundfile raises LibsndfileError (a RuntimeError)
                errors.print(f"asr: cannot read {name}: {error}", markup=False)
                status = 1
                continue
            config = recognition_config(
                rate,
                audio_channel_count=channels,
                model=args.model,
                language_codes=languages,
                multi_talker=args.multi_talker,
                enable_word_time_offsets=args.words,
            )
            streaming = asr_pb2.StreamingRecognitionConfig(config=config, interim_results=True)
            responses = client.streaming_recognize(chunks, streaming, timeout=args.timeout)
            try:
                if args.json:
                    print_json_stream(name, responses, args.multi_talker)
                else:
                    show_name = len(args.files) > 1
                    print_text_stream(name, responses, args.multi_talker, console, show_name=show_name)
            except grpc.RpcError as error:
                errors.print(f"asr: {name}: {error.code().name}: {error.details()}", markup=False)
                status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    try:
        if args.command == "models":
            with _connect(args) as client:
                print_models(client.list_models(timeout=30), args.json, console)
            return 0
        return _transcribe(args, console, errors)
    except grpc.RpcError as error:
        errors.print(f"asr: {error.code().name}: {error.details()}", markup=False)
        return 1
    except KeyboardInterrupt:
        return 130


def entry_point() -> None:
    """Console script ``asr``."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
