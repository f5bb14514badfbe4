"""The five-language (en, de, fr, es, it) synthetic training data: ``asr-train synth-multi``.

Text (``normalize``, ``vocab``, ``templates``, ``text``) -> voice (``voices``, engines of
``training.tts``) -> plan of one utterance (``plan``) -> clean speech, augmentation (``augment``,
``g711``) and FLAC file (``render``) -> resumable data set writer and command line (``synth_multi``).
"""
