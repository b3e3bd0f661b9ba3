/**
 * Worker thread that scores password guessability with zxcvbn-ts. It runs apart from the event loop
 * (a check takes 5–15 ms of CPU) and holds the ~20 MB of dictionaries only while it lives.
 */
import { parentPort } from 'node:worker_threads';
import { ZxcvbnFactory } from '@zxcvbn-ts/core';
import * as common from '@zxcvbn-ts/language-common';
import * as en from '@zxcvbn-ts/language-en';

/** A request from the main thread. */
export interface StrengthRequest {
  id: number;
  password: string;
  userInputs: string[];
}

/** The answer: zxcvbn's score (0–4) and its warning, if any. */
export interface StrengthResponse {
  id: number;
  score: number;
  warning: string | null;
}

// English translations only (the feedback messages); not the English dictionary (names, Wikipedia
// words): it costs ~64 MB more and changed no verdict we tried.
const zxcvbn = new ZxcvbnFactory({ dictionary: { ...common.dictionary }, graphs: common.adjacencyGraphs, translations: en.translations });

parentPort?.on('message', (request: StrengthRequest) => {
  void zxcvbn.checkAsync(request.password, request.userInputs).then(
    (result) => parentPort?.postMessage({ id: request.id, score: result.score, warning: result.feedback.warning ?? null } satisfies StrengthResponse),
    () => parentPort?.postMessage({ id: request.id, score: 0, warning: 'The password could not be checked.' } satisfies StrengthResponse),
  );
});
