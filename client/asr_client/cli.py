"""``asr``: transcribe files or stdin with a streaming ASR server, list its models.

asr transcribe call.wav meeting.flac --server asr.internal:50051
arecord -f S16_LE -r 16000 -c 1 | asr transcribe -          # a WAV on a pipe streams as it arrives
arecord -f S16_LE -r 16000 -c 1 -t raw | asr transcribe - --rate 16000
sox call.wav -t raw -e mu-law -r 8000 - | asr transcribe - --encoding mulaw --rate 8000
curl -s https://example.com/talk.flac | asr transcribe -    # FLAC, Ogg: decoded once all arrived
asr transcribe call.wav --json | jq .text
asr transcribe talk.wav --format srt > talk.srt
asr transcribe call.wav --phrase tanaka --phrase gdansk --boost 8 --alternatives 3
asr transcribe - --rate 16000 --single-utterance --vad-events   # one command from a microphone
asr models

Ctrl-C: the first ends the audio there (the stream half-closes and its last results still
print; exit status 130), the second quits at once.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
from collections.abc import Iterable

import grpc
from rich.console import Console

from asr_client import __version__
from asr_client.api.asr.v1 import asr_pb2
from asr_client.audio import AudioDecodeError, paced
from asr_client.client import DEFAULT_SERVER, AsrClient, recognition_config, streaming_config
from asr_client.interrupt import StopOnInterrupt, until_stopped
from asr_client.output import Labels, print_json_stream, print_models, print_subtitle_stream, print_text_stream
from asr_client.sources import RAW_ENCODINGS, AudioSource, RawFormat, file_source, stdin_stream, stream_source
from asr_client.subtitles import FORMATS as SUBTITLE_FORMATS

OUTPUT_FORMATS = ("text", "json", *SUBTITLE_FORMATS)
INTERRUPTED = 130  # the shell's status for a process ended by SIGINT


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (asr-client)")
    commands = parser.add_subparsers(dest="command", required=True)

    transcribe = commands.add_parser(
        "transcribe",
        parents=[common],
        help="transcribe audio files (any format soundfile reads) or audio on stdin",
        description="Stream audio files to the server and print their transcripts. On a terminal, "
        "partial results update in place and final results are printed line by line. With --json, "
        "one JSON object per server response, then per file a line whose 'text' holds the whole "
        "final transcript; with --format srt or vtt, subtitles. Ctrl-C ends the audio there (the "
        "last results still print, exit status 130); a second Ctrl-C quits at once.",
    )
    transcribe.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="audio file, or - for stdin: raw samples as --encoding, --rate and --channels say, or a "
        "WAV, FLAC or Ogg file, told by its header (a WAV of 16-bit PCM, mu-law or A-law streams as it "
        "arrives; others are decoded once they have all arrived)",
    )
    pace = transcribe.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="send audio at real-time speed")
    pace.add_argument("--speed", type=_positive_float, metavar="X", help="send audio at X times real time")
    transcribe.add_argument(
        "--chunk-ms", type=_positive_float, default=100.0, metavar="N", help="audio per request (default: %(default)g)"
    )
    transcribe.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        help="text (the default), json (as --json), or srt/vtt subtitles from the final results "
        "(timed by their words; one FILE)",
    )
    transcribe.add_argument("--languages", metavar="en,de", help="comma-separated languages the speech may be in")
    transcribe.add_argument(
        "--multi-talker", action="store_true", help="separate overlapping speakers into virtual channels"
    )
    transcribe.add_argument("--model", default="", help="model name (default: the server's default model)")
    transcribe.add_argument(
        "--words", action="store_true", help="word time offsets: in text mode a line of word times after each final"
    )
    transcribe.add_argument(
        "--word-confidence",
        action="store_true",
        help="each word's confidence (implies --words; in text mode after each word's times)",
    )
    transcribe.add_argument(
        "--alternatives",
        type=_positive_int,
        metavar="N",
        help="up to N distinct transcripts per final, best first (1 to 10; max_alternatives); in text mode "
        "the others follow each final as '  #2 ...'",
    )
    transcribe.add_argument(
        "--phrase",
        action="append",
        default=[],
        metavar="TEXT",
        help="a word or phrase to favour (phrase boosting: speech_contexts); repeat for more",
    )
    transcribe.add_argument(
        "--boost",
        type=_finite_float,
        default=0.0,
        metavar="F",
        help="how much to favour the --phrase phrases, 0 to 20 (default: the server's, 5)",
    )
    transcribe.add_argument(
        "--single-utterance",
        action="store_true",
        help="stop after the first utterance: the server ends the stream after its final",
    )
    transcribe.add_argument(
        "--vad-events",
        action="store_true",
        help="voice activity events: '[speech begins at 1.02 s]' lines (JSON: speech_event_type)",
    )
    transcribe.add_argument(
        "--speech-start-timeout",
        type=_positive_float,
        metavar="S",
        help="end the stream if no speech starts within S seconds (voice_activity_timeout)",
    )
    transcribe.add_argument(
        "--speech-end-timeout",
        type=_positive_float,
        metavar="S",
        help="end the stream S seconds after speech ends if no more starts (voice_activity_timeout)",
    )
    channels = transcribe.add_mutually_exclusive_group()
    channels.add_argument(
        "--channel",
        type=_non_negative_int,
        metavar="N",
        help="recognise only channel N (0-based) of multi-channel audio (the API's selected_channel)",
    )
    channels.add_argument(
        "--per-channel",
        action="store_true",
        help="recognise each channel on its own; results are labelled with their channel "
        "(separate_recognition_per_channel)",
    )
    transcribe.add_argument(
        "--encoding",
        choices=tuple(RAW_ENCODINGS),
        default="linear16",
        help="encoding of raw samples on stdin (default: %(default)s)",
    )
    transcribe.add_argument(
        "--rate",
        type=_positive_int,
        default=16000,
        metavar="R",
        help="sample rate of raw samples on stdin (default: %(default)d)",
    )
    transcribe.add_argument(
        "--channels", type=_positive_int, default=1, help="channels of raw samples on stdin (default: %(default)d)"
    )
    transcribe.add_argument("--timeout", type=_positive_float, metavar="S", help="deadline per file in seconds")

    commands.add_parser("models", parents=[common], help="list the server's models")
    return parser


def _positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}")
    return value


def _finite_float(text: str) -> float:
    """argparse type: a finite number (the server checks its range)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text!r}")
    return value


def _int_at_least(text: str, low: int, wanted: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {wanted}; got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: a whole number above 0."""
    return _int_at_least(text, 1, "a positive whole number")


def _non_negative_int(text: str) -> int:
    """argparse type: a whole number, 0 or more."""
    return _int_at_least(text, 0, "0 or more")


def _output_format(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """What transcribe prints: --format, or json with --json, or text; refuses what cannot be."""
    if args.json and args.format not in (None, "json"):
        parser.error(f"--json and --format {args.format} contradict each other")
    chosen = args.format or ("json" if args.json else "text")
    if chosen in SUBTITLE_FORMATS and len(args.files) > 1:
        parser.error(f"--format {chosen} writes the subtitles of one FILE; got {len(args.files)}")
    return str(chosen)


def _check_transcribe_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses options that mean nothing together."""
    if args.boost and not args.phrase:
        parser.error("--boost applies to the --phrase phrases; give at least one --phrase")


def _error(message: str) -> None:
    """An error on stderr, on one line whatever its length (scripts and logs read it whole)."""
    sys.stderr.write("asr: " + " ".join(message.splitlines()) + "\n")
    sys.stderr.flush()


def _reason(error: Exception) -> str:
    """Why a file could not be read: "No such file or directory", not errno and path again."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _audio_source(path: str, args: argparse.Namespace) -> AudioSource:
    """A file's audio, or stdin's ("-")."""
    if path == "-":
        return stream_source(stdin_stream(), RawFormat(args.encoding, args.rate, args.channels), args.chunk_ms)
    return file_source(path, args.chunk_ms)


def _stream_config(source: AudioSource, args: argparse.Namespace) -> asr_pb2.StreamingRecognitionConfig:
    languages = [code.strip() for code in (args.languages or "").split(",") if code.strip()]
    config = recognition_config(
        source.sample_rate,
        encoding=source.encoding,
        audio_channel_count=source.channels,
        selected_channel=args.channel,
        separate_recognition_per_channel=args.per_channel,
        model=args.model,
        language_codes=languages,
        multi_talker=args.multi_talker,
        # Subtitles are timed by the words when the server gives them.
        enable_word_time_offsets=args.words or args.output in SUBTITLE_FORMATS,
        enable_word_confidence=args.word_confidence,
        max_alternatives=args.alternatives or 0,
        phrases=args.phrase,
        boost=args.boost,
    )
    return streaming_config(
        config,
        interim_results=True,
        single_utterance=args.single_utterance,
        enable_voice_activity_events=args.vad_events,
        speech_start_timeout_s=args.speech_start_timeout,
        speech_end_timeout_s=args.speech_end_timeout,
    )


def _show(
    name: str, responses: Iterable[asr_pb2.StreamingRecognizeResponse], args: argparse.Namespace, console: Console
) -> None:
    """The responses of one file, as ``args.output`` says."""
    if args.output == "json":
        print_json_stream(name, responses, args.multi_talker, sys.stdout, per_channel=args.per_channel)
    elif args.output in SUBTITLE_FORMATS:
        print_subtitle_stream(responses, args.output, sys.stdout, Labels(args.multi_talker, args.per_channel))
    else:
        show_name = len(args.files) > 1
        print_text_stream(
            name,
            responses,
            args.multi_talker,
            console,
            show_name=show_name,
            per_channel=args.per_channel,
            words=args.words,
        )


def _transcribe_file(
    client: AsrClient, path: str, args: argparse.Namespace, console: Console, stop: threading.Event
) -> int:
    """Stream one file (or stdin) and show its results; the exit status it earns (0 or 1)."""
    name = "<stdin>" if path == "-" else path
    try:
        source = _audio_source(path, args)
    except (OSError, AudioDecodeError) as error:
        _error(f"cannot read {name}: {_reason(error)}")
        return 1
    speed = 1.0 if args.realtime else args.speed
    chunks = until_stopped(paced(source.chunks, source.bytes_per_second, speed), stop)
    responses = client.streaming_recognize(chunks, _stream_config(source, args), timeout=args.timeout)
    try:
        _show(name, responses, args, console)
    except grpc.RpcError as error:
        _error(f"{name}: {error.code().name}: {error.details()}")
        return 1
    return 0


def _say_stopping() -> None:
    _error("stopping: the audio ends here, the last results follow (Ctrl-C again to quit)")


def _transcribe(args: argparse.Namespace, console: Console) -> int:
    status = 0
    with _connect(args) as client, StopOnInterrupt(on_first=_say_stopping) as interrupt:
        for path in args.files:
            status = max(status, _transcribe_file(client, path, args, console, interrupt.stop))
            if interrupt.stop.is_set():  # the rest of the files are not sent
                return INTERRUPTED
    return status


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "transcribe":
        args.output = _output_format(parser, args)
        _check_transcribe_options(parser, args)
        args.words = args.words or args.word_confidence
    console = Console(highlight=False)
    try:
        if args.command == "models":
            with _connect(args) as client:
                print_models(client.list_models(timeout=30), args.json, console)
            return 0
        return _transcribe(args, console)
    except grpc.RpcError as error:
        _error(f"{error.code().name}: {error.details()}")
        return 1
    except KeyboardInterrupt:
        return INTERRUPTED


def entry_point() -> None:
    """Console script ``asr``."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
