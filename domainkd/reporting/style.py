"""The HTML report's style sheet (inline in the page: the report needs no external resources)."""

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; background: #fafafa;
       max-width: 1240px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 1.8em; margin-bottom: 0.2em; }
h2 { font-size: 1.35em; margin-top: 2.2em; border-bottom: 2px solid #e3e3e3; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 1.6em 0 0.4em; }
nav { font-size: 0.9em; margin: 8px 0 16px; }
nav a { margin-right: 14px; color: #4c72b0; text-decoration: none; }
.counts { color: #555; } .note { color: #666; font-size: 0.9em; } .scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 12px; background: #fff; font-size: 0.92em; }
th, td { border: 1px solid #e1e1e1; padding: 4px 9px; vertical-align: top; }
th { background: #f1f3f6; text-align: left; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fcfcfd; }
small.ci { color: #777; font-size: 0.8em; }
table.summary th, table.summary td { padding: 4px 7px; }
table.summary small.ci { display: block; }
.sig-blocks { display: flex; flex-wrap: wrap; gap: 0 32px; }
/* min-width 0: a wide table scrolls inside its block instead of forcing one block per row */
.sig-block { flex: 1 1 540px; min-width: 0; }
.sig-block table { font-size: 0.84em; }
.sig-block th, .sig-block td { padding: 4px 7px; }
.fail { color: #b03a2e; font-size: 0.8em; display: block; }
tr.sig { background: #eaf6ea !important; }
p.verdict { margin: 4px 0 2px; } p.verdict.sig { font-weight: 500; color: #1e6b30; }
.chart svg { max-width: 100%; height: auto; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 28px; align-items: flex-start; }
.chart-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 12px 24px; }
dl.legend dt { font-weight: 600; } dl.legend dd { margin: 0 0 6px 16px; color: #555; }
table.examples { font-size: 0.85em; }
table.examples td { max-width: 320px; }
table.examples .text { white-space: pre-wrap; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 0.78em; font-weight: 600;
         margin-top: 3px; }
.badge.good { background: #d4eed8; color: #1e6b30; } .badge.mid { background: #fbedc9; color: #7a5a00; }
.badge.bad { background: #f7d6d2; color: #8e2a1f; } .badge.none { background: #eee; color: #777; }
details summary { cursor: pointer; color: #4c72b0; font-size: 0.85em; }
details pre { white-space: pre-wrap; background: #f6f6f6; padding: 6px; max-height: 260px; overflow: auto;
              font-size: 0.9em; }
"""
