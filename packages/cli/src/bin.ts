#!/usr/bin/env node
import { processIo } from './io.js';
import { run } from './run.js';

const { io, dispose } = processIo();
process.exitCode = await run(process.argv.slice(2), io);
dispose();
