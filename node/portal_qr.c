/*
 * The QR code of a TOTP enrolment's otpauth:// URI, drawn by libqrencode
 * and written as an inline SVG (the portal loads nothing from elsewhere:
 * its Content-Security-Policy allows no external image). One path of unit
 * squares, a quiet zone of 4 modules (ISO/IEC 18004 §6.3.8), error
 * correction level M. The URI holds the seed: the symbol's modules
 * (qr->data) are wiped before they are freed. Only those: libqrencode's
 * own working copies of the URI are freed without wiping (it offers no
 * hook for that).
 */
#include <qrencode.h>
#include <string.h>

#include "portal_priv.h"
#include "secrets.h"

#define QUIET 4

int portal_qr_svg(struct pbuf *b, const char *text)
{
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    int w, size;

    if (!qr)
        return -1;
    w = qr->width;
    size = w + 2 * QUIET;
    pbuf_printf(b,
                "<svg id=\"qr\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\""
                " width=\"240\" height=\"240\" shape-rendering=\"crispEdges\" role=\"img\""
                " aria-label=\"QR code of the setup link\">"
                "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/><path fill=\"#000\" d=\"",
                size, size, size, size);
    for (int y = 0; y < w; y++) {
        for (int x = 0; x < w; x++) {
            if (qr->data[y * w + x] & 1) /* bit 0: a dark module */
                pbuf_printf(b, "M%d %dh1v1h-1z", x + QUIET, y + QUIET);
        }
    }
    pbuf_puts(b, "\"/></svg>");
    secret_wipe(qr->data, (size_t)w * (size_t)w);
    QRcode_free(qr);
    return 0;
}
