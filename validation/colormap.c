/*
 * colormap.c: colour maps for error and uncertainty images in reports.
 *
 * inferno and viridis are the perceptually uniform maps of van der Walt and Smith (matplotlib 2.0,
 * "A better default colormap for matplotlib", SciPy 2015): lightness rises monotonically, so a
 * brighter pixel always means a larger value, also in grey print and for common colour-vision
 * deficiencies. The tables hold matplotlib's colours at 33 evenly spaced positions (t = k/32, from
 * matplotlib 3.6's 256-entry tables); colours between are linearly interpolated, which differs from
 * the full table by at most 2 of 255 per channel.
 */
#include "mr_validation.h"

#include <math.h>

#define STOPS 33

static const unsigned char INFERNO[STOPS][3] = {
    {0, 0, 4},       {4, 3, 18},      {11, 7, 36},     {21, 11, 55},   {33, 12, 74},
    {47, 10, 91},    {61, 9, 101},    {74, 12, 107},   {87, 16, 110},  {100, 21, 110},
    {113, 25, 110},  {125, 30, 109},  {138, 34, 106},  {151, 39, 102}, {163, 44, 97},
    {176, 49, 91},   {188, 55, 84},   {199, 62, 76},   {210, 70, 68},  {219, 80, 59},
    {228, 90, 49},   {235, 102, 40},  {241, 115, 29},  {246, 128, 19}, {249, 142, 9},
    {251, 157, 7},   {252, 172, 17},  {251, 188, 33},  {249, 203, 53}, {245, 219, 76},
    {242, 234, 105}, {243, 246, 138}, {252, 255, 164},
};

static const unsigned char VIRIDIS[STOPS][3] = {
    {68, 1, 84},    {71, 13, 96},   {72, 24, 106},  {72, 35, 116},  {71, 45, 123},  {69, 55, 129},
    {66, 64, 134},  {62, 73, 137},  {59, 82, 139},  {55, 91, 141},  {51, 99, 141},  {47, 107, 142},
    {44, 114, 142}, {41, 122, 142}, {38, 130, 142}, {35, 137, 142}, {33, 145, 140}, {31, 152, 139},
    {31, 160, 136}, {34, 167, 133}, {40, 174, 128}, {50, 182, 122}, {63, 188, 115}, {78, 195, 107},
    {94, 201, 98},  {112, 207, 87}, {132, 212, 75}, {152, 216, 62}, {173, 220, 48}, {194, 223, 35},
    {216, 226, 25}, {236, 229, 27}, {253, 231, 37},
};

const char *mr_colormap_name(mr_colormap map)
{
    switch (map) {
    case MR_COLORMAP_INFERNO:
        return "inferno";
    case MR_COLORMAP_VIRIDIS:
        return "viridis";
    default:
        return "gray";
    }
}

void mr_colormap_rgb(unsigned char rgb[3], mr_colormap map, double t)
{
    const unsigned char(*tab)[3];
    double pos, frac;
    int k;
    if (!(t > 0)) t = 0; /* also NaN */
    if (t > 1) t = 1;
    if (map == MR_COLORMAP_GRAY) {
        unsigned char v = (unsigned char)(t * 255.0 + 0.5);
        rgb[0] = rgb[1] = rgb[2] = v;
        return;
    }
    tab = map == MR_COLORMAP_VIRIDIS ? VIRIDIS : INFERNO;
    pos = t * (STOPS - 1);
    k = (int)pos;
    if (k >= STOPS - 1) k = STOPS - 2;
    frac = pos - k;
    for (int c = 0; c < 3; c++)
        rgb[c] = (unsigned char)(tab[k][c] + frac * (tab[k + 1][c] - tab[k][c]) + 0.5);
}

void mr_colormap_apply(unsigned char *rgb, const float *img, size_t n, float lo, float hi,
                       mr_colormap map)
{
    double scale = hi > lo ? 1.0 / ((double)hi - (double)lo) : 0;
    /* a lookup table of 1024 levels: finer than the 8-bit output, and no per-pixel interpolation */
    unsigned char lut[1024][3];
    for (int i = 0; i < 1024; i++)
        mr_colormap_rgb(lut[i], map, i / 1023.0);
    for (size_t i = 0; i < n; i++) {
        double t = scale > 0 ? ((double)img[i] - lo) * scale : (img[i] > lo ? 1.0 : 0.0);
        int k;
        if (!(t > 0)) t = 0;
        if (t > 1) t = 1;
        k = (int)(t * 1023.0 + 0.5);
        rgb[3 * i] = lut[k][0];
        rgb[3 * i + 1] = lut[k][1];
        rgb[3 * i + 2] = lut[k][2];
    }
}
