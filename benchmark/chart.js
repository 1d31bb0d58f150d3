'use strict'

// The benchmark's picture (benchmark/chart.svg, shown in the README): cold start and cached call
// per subject, both drivers of ours and every peer, on a log scale with the floor marked. A small
// SVG writer rather than a charting dependency: two panels of bars are all it draws.

const WIDTH = 960
const LABEL_WIDTH = 250
const VALUE_WIDTH = 90
const BAR_HEIGHT = 18
const BAR_GAP = 6
const PANEL_TITLE = 48
const AXIS_HEIGHT = 28
const PANEL_GAP = 26
const CAPTION_HEIGHT = 46
const OURS_COLOR = '#2f6fdf'
const PEER_COLOR = '#9aa3ad'
const FLOOR_COLOR = '#d9480f'

function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c])
}

/**
 * `panels`: [{ title, floor: { label, ms }, bars: [{ label, ms, ours }] }] (times in ms; a bar whose
 * ms is not a number is left out). `caption`: one line under the chart. `format`: ms → text.
 */
function chart(panels, caption, format) {
  const plotLeft = LABEL_WIDTH
  const plotWidth = WIDTH - LABEL_WIDTH - VALUE_WIDTH - 20
  const parts = []
  let y = 16
  for (const panel of panels) {
    const bars = panel.bars.filter((b) => Number.isFinite(b.ms) && b.ms > 0)
    const values = bars.map((b) => b.ms).concat(panel.floor && panel.floor.ms > 0 ? [panel.floor.ms] : [])
    // Whole decades around the values, so the axis reads 100 ns, 1 µs, 10 µs …; the lowest
    // value always gets a bar of some length.
    const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...values)) - 1e-9))
    const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values))))
    const x = (ms) => plotLeft + (Math.log10(ms / lo) / Math.log10(hi / lo)) * plotWidth
    parts.push(`<text x="0" y="${y + 18}" class="title">${escape(panel.title)}</text>`)
    y += PANEL_TITLE
    const top = y
    // Grid and ticks go first, under the bars; their place is known once the bars are counted.
    const under = []
    const gridAt = parts.length
    for (const bar of bars) {
      const end = x(bar.ms)
      parts.push(
        `<text x="${plotLeft - 8}" y="${y + BAR_HEIGHT - 5}" class="label${bar.ours ? ' ours' : ''}">${escape(bar.label)}</text>`,
        `<rect x="${plotLeft}" y="${y}" width="${Math.max(1, end - plotLeft).toFixed(1)}" height="${BAR_HEIGHT}" fill="${bar.ours ? OURS_COLOR : PEER_COLOR}"/>`,
        `<text x="${(end + 6).toFixed(1)}" y="${y + BAR_HEIGHT - 5}" class="value">${escape(format(bar.ms))}</text>`,
      )
      y += BAR_HEIGHT + BAR_GAP
    }
    const bottom = y
    for (let tick = lo; tick <= hi * 1.0001; tick *= 10) {
      const tx = x(tick).toFixed(1)
      under.push(
        `<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${bottom}" class="grid"/>`,
        `<text x="${tx}" y="${bottom + 16}" class="tick">${escape(format(tick))}</text>`,
      )
    }
    parts.splice(gridAt, 0, ...under)
    if (panel.floor && panel.floor.ms > 0) {
      const fx = x(panel.floor.ms).toFixed(1)
      parts.push(
        `<line x1="${fx}" y1="${top - 6}" x2="${fx}" y2="${bottom}" stroke="${FLOOR_COLOR}" stroke-width="2" stroke-dasharray="5 3"/>`,
        `<text x="${fx}" y="${top - 9}" class="floor">floor: ${escape(panel.floor.label)} ${escape(format(panel.floor.ms))}</text>`,
      )
    }
    y = bottom + AXIS_HEIGHT + PANEL_GAP
  }
  const height = y + CAPTION_HEIGHT - PANEL_GAP
  parts.push(`<text x="0" y="${height - 24}" class="caption">${escape(caption)}</text>`)
  parts.push(`<text x="0" y="${height - 8}" class="caption">Log scale; median over fresh processes; blue: yc-metadata-token, grey: peers; dashed: the floor.</text>`)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    '<style>',
    '.title{font-size:15px;font-weight:bold;fill:#222}.label{font-size:12px;fill:#333;text-anchor:end}',
    '.ours{font-weight:bold;fill:#1a4fae}.value{font-size:11px;fill:#333}.tick{font-size:10px;fill:#666;text-anchor:middle}',
    '.grid{stroke:#e3e6ea;stroke-width:1}.floor{font-size:11px;fill:' + FLOOR_COLOR + ';text-anchor:middle}.caption{font-size:11px;fill:#555}',
    '</style>',
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
  ]
    .concat(parts, ['</svg>'])
    .join('\n')
}

module.exports = { chart }
