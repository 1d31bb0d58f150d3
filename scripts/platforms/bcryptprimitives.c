/*
 * Test-only stand-in for Windows' bcryptprimitives.dll, which Wine 8 does not have. Rust's std
 * imports ProcessPrng from it (HashMap keys, tokio), so without it the addon fails to load under
 * Wine, although Windows 10 and newer ship it. scripts/test-platforms.js builds this with zig into
 * the system32 of its own Wine prefix under .cache/; it is never packaged.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
  while (len > 0) {
    ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
    if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0) return FALSE;
    data += chunk;
    len -= chunk;
  }
  return TRUE;
}
