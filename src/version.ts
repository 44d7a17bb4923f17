/** vitfold's version, written into every file it exports (kept equal to package.json's). */
export const VERSION = '0.1.0';
