#!/usr/bin/env node
// Streams a 16-bit PCM WAV file to asr.v1.Recognizer/StreamingRecognize and prints each response
// as one JSON line, then {"text": ...} with the finals joined. The client is generated at run time
// from proto/asr/v1/asr.proto (@grpc/proto-loader), the way Node services usually consume a proto.
//
//   node stream_file.js [--target HOST:PORT] [--chunk-ms 100] [--language CODE] [--token T] FILE.wav
//
// Exit status: 0 on success; 1 with "asr-node: CODE: message" on stderr when the call fails; 2 for
// bad arguments or an unreadable file.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO = path.resolve(__dirname, '..', '..', 'proto', 'asr', 'v1', 'asr.proto');

function usage(message) {
  process.stderr.write(`asr-node: ${message}\n`);
  process.stderr.write('usage: node stream_file.js [--target HOST:PORT] [--chunk-ms MS] [--language CODE] [--token T] FILE.wav\n');
  process.exit(2);
}

function parseArgs(argv) {
  const options = { target: 'localhost:50051', chunkMs: 100, languages: [], token: process.env.ASR_TOKEN || '', file: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--target') options.target = value();
    else if (arg === '--chunk-ms') options.chunkMs = Number(value());
    else if (arg === '--language') options.languages.push(value());
    else if (arg === '--token') options.token = value();
    else if (arg.startsWith('--')) usage(`unknown option ${arg}`);
    else options.file = arg;
  }
  if (!options.file) usage('a WAV file is required');
  if (!(options.chunkMs > 0)) usage('--chunk-ms must be a positive number');
  return options;
}

// The PCM samples and format of a RIFF/WAVE file with 16-bit integer samples.
function readWav(file) {
  let data;
  try {
    data = fs.readFileSync(file);
  } catch (error) {
    usage(`${file}: ${error.code === 'ENOENT' ? 'No such file or directory' : error.message}`);
  }
  if (data.length < 12 || data.toString('ascii', 0, 4) !== 'RIFF' || data.toString('ascii', 8, 12) !== 'WAVE') {
    usage(`${file}: not a WAV file`);
  }
  let format = null;
  for (let offset = 12; offset + 8 <= data.length; ) {
    const id = data.toString('ascii', offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ') {
      format = { code: data.readUInt16LE(body), channels: data.readUInt16LE(body + 2), rate: data.readUInt32LE(body + 4), bits: data.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      // 1: PCM; 0xFFFE: WAVE_FORMAT_EXTENSIBLE (its subformat is PCM for 16-bit files written by soundfile/sox)
      if (!format || ![1, 0xfffe].includes(format.code) || format.bits !== 16) usage(`${file}: only 16-bit PCM WAV is supported`);
      return { ...format, pcm: data.subarray(body, Math.min(body + size, data.length)) };
    }
    offset = body + size + (size % 2);
  }
  return usage(`${file}: no audio data`);
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  const wav = readWav(options.file);
  const definition = protoLoader.loadSync(PROTO, { keepCase: false, longs: Number, enums: String, defaults: false });
  const asr = grpc.loadPackageDefinition(definition).asr.v1;
  const client = new asr.Recognizer(options.target, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (options.token) metadata.set('authorization', `Bearer ${options.token}`);

  const finals = [];
  const call = client.StreamingRecognize(metadata);
  call.on('data', (response) => {
    process.stdout.write(JSON.stringify(response) + '\n');
    for (const result of response.results || []) {
      if (result.isFinal && result.alternatives && result.alternatives.length) finals.push(result.alternatives[0].transcript);
    }
  });
  call.on('error', (error) => {
    const code = Object.keys(grpc.status).find((name) => grpc.status[name] === error.code) || error.code;
    process.stderr.write(`asr-node: ${code}: ${error.details}\n`);
    process.exit(1);
  });
  call.on('end', () => {
    process.stdout.write(JSON.stringify({ text: finals.filter((t) => t).join(' ') }) + '\n');
    client.close();
  });

  call.write({
    streamingConfig: {
      config: { encoding: 'LINEAR16', sampleRateHertz: wav.rate, audioChannelCount: wav.channels, languageCodes: options.languages },
      interimResults: true,
    },
  });
  const frameBytes = 2 * wav.channels;
  const chunk = Math.max(frameBytes, Math.round((wav.rate * options.chunkMs) / 1000) * frameBytes);
  for (let start = 0; start < wav.pcm.length; start += chunk) {
    call.write({ audioContent: wav.pcm.subarray(start, start + chunk) });
  }
  call.end();
}

main();
