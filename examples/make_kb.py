"""Generate the binary documents of the sample knowledge base in examples/kb/.

The sample knowledge base describes "Northwind Robotics", a fictional company.
The text documents in examples/kb/ (.md, .html, .txt, .csv) are written by hand;
this script writes the binary ones:

    hr-leave-policy.docx                DOCX (Heading styles, one table)
    facilities-office-guide.pdf         PDF  (text layer, Helvetica, 3 pages)
    onboarding-week-one.pptx            PPTX (title placeholders on every slide)
    it-equipment-catalog.xlsx           XLSX (one sheet, header row + 13 rows)
    announcement-password-rotation.eml  EML  (RFC 822 message, plain-text body)

The output is deterministic: every date is fixed, nothing is random, and the
ZIP containers (DOCX/PPTX/XLSX) are rewritten with fixed timestamps, so running
the script twice with the same library versions yields identical files.

This script is NOT part of the product's setup; the generated files are
committed. To regenerate them, use a throwaway virtual environment:

    python3 -m venv /tmp/kbgen
    /tmp/kbgen/bin/pip install python-docx python-pptx openpyxl fpdf2
    /tmp/kbgen/bin/python examples/make_kb.py            # writes into examples/kb/
    /tmp/kbgen/bin/python examples/make_kb.py --out DIR  # or into another folder

Requirements: python-docx, python-pptx, openpyxl, fpdf2 (pure-Python PDF writer).
The PDF uses the built-in Helvetica core font, so its text must stay ASCII.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import zipfile
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

from docx import Document
from docx.shared import Pt
from fpdf import FPDF
from openpyxl import Workbook
from openpyxl.styles import Font
from pptx import Presentation
from pptx.util import Pt as PptPt

FIXED_DATE = dt.datetime(2025, 3, 1, 9, 0, 0)
FIXED_DATE_UTC = FIXED_DATE.replace(tzinfo=dt.UTC)
AUTHOR = "Northwind Robotics"
ZIP_TIME = (2025, 3, 1, 9, 0, 0)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def normalize_zip(path: Path) -> None:
    """Rewrite an OOXML container with fixed timestamps and a fixed modified date.

    python-docx, python-pptx and openpyxl stamp the current time into the ZIP
    entries (and openpyxl into docProps/core.xml); this makes the bytes stable.
    """
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    stamp = FIXED_DATE.strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(path, "w") as dst:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                text = data.decode("utf-8")
                text = re.sub(
                    r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                    lambda m: m.group(1) + stamp + m.group(3),
                    text,
                )
                data = text.encode("utf-8")
            new = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            new.compress_type = zipfile.ZIP_DEFLATED
            new.external_attr = 0o644 << 16
            dst.writestr(new, data)


# --------------------------------------------------------------------------
# DOCX: HR leave policy
# --------------------------------------------------------------------------
def make_docx(out: Path) -> Path:
    path = out / "hr-leave-policy.docx"
    doc = Document()
    props = doc.core_properties
    props.title = "Leave Policy"
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.created = FIXED_DATE
    props.modified = FIXED_DATE
    props.revision = 1

    style = doc.styles["Normal"]
    style.font.name = "Calibri"
    style.font.size = Pt(11)

    doc.add_heading("Leave Policy", level=0)
    doc.add_paragraph(
        "Owner: People and Culture (HR), Northwind Robotics. "
        "This policy applies to all permanent employees in every Northwind Robotics office."
    )

    doc.add_heading("1. Annual leave", level=1)
    doc.add_paragraph("Full-time employees receive 27 days of paid annual leave per calendar year.")
    doc.add_paragraph(
        "Part-time employees receive annual leave in proportion to their contracted hours."
    )
    doc.add_paragraph(
        "Up to 5 unused days of annual leave may be carried over, and carried-over days "
        "must be taken before 31 March of the following year."
    )

    doc.add_heading("2. Sick leave", level=1)
    doc.add_paragraph(
        "Employees may self-certify sickness for up to three consecutive calendar days."
    )
    doc.add_paragraph("A doctor's note is required from the fourth day of sickness.")
    doc.add_paragraph("Tell your manager about sick leave before 10:00 on the first day of absence.")

    doc.add_heading("3. Parental leave", level=1)
    doc.add_paragraph("Parental leave is 18 weeks at full pay for each parent.")
    doc.add_paragraph(
        "Parental leave can be split into blocks, and must be taken before the child turns three."
    )

    doc.add_heading("4. Other leave", level=1)
    doc.add_paragraph(
        "Bereavement leave is booked with leave code LV-BRV and gives up to 5 paid days "
        "after the death of a close family member."
    )
    doc.add_paragraph(
        "Every employee may take 2 paid volunteering days per year for charity work."
    )

    doc.add_heading("5. Leave types and codes", level=1)
    doc.add_paragraph("The table below lists every leave type and the code used to book it.")
    rows = [
        ("Leave type", "Code", "Paid allowance", "Approved by"),
        ("Annual leave", "LV-ANN", "27 days per year", "Line manager"),
        ("Sick leave", "LV-SCK", "As needed, doctor's note from the fourth day", "Line manager"),
        ("Parental leave", "LV-PAR", "18 weeks", "HR business partner"),
        ("Volunteering", "LV-VOL", "2 days per year", "Line manager"),
        ("Bereavement", "LV-BRV", "Up to 5 days", "Line manager"),
    ]
    table = doc.add_table(rows=len(rows), cols=len(rows[0]))
    table.style = "Table Grid"
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            cell = table.cell(r, c)
            cell.text = value
            if r == 0:
                for run in cell.paragraphs[0].runs:
                    run.bold = True

    doc.add_heading("6. Requesting leave", level=1)
    doc.add_paragraph("All leave is requested in the HR system PeopleHub.")
    doc.add_paragraph(
        "Annual leave of more than one week must be requested at least 10 working days in advance."
    )
    doc.add_paragraph(
        "Questions about this policy go to your HR business partner, Amund Kristiansen."
    )

    doc.save(path)
    normalize_zip(path)
    return path


# --------------------------------------------------------------------------
# PDF: facilities office guide (Oslo headquarters)
# --------------------------------------------------------------------------
PDF_SECTIONS: list[tuple[str, list[str]]] = [
    (
        "1. Opening hours and building access",
        [
            "The Oslo headquarters building is open from 06:30 to 21:00 on weekdays.",
            "The building is closed on weekends and public holidays.",
            "Access outside opening hours must be requested with facilities form FAC-12.",
            "Approved after-hours access is loaded onto your building badge within one working day.",
            "Always carry your badge; tailgating through the security gates is not allowed.",
        ],
    ),
    (
        "2. Meeting rooms and desks",
        [
            "Meeting rooms are booked in the RoomLink booking system.",
            "A single meeting room booking may last at most 3 hours.",
            "Rooms that are not checked in within 15 minutes of the start time are released automatically.",
            "Desks on the open floors are shared; desks in the Green Zone are reserved for quiet, focused work.",
            "Please leave your desk clean at the end of the day so that colleagues can use it.",
        ],
    ),
    (
        "3. Canteen",
        [
            "The canteen on the ground floor serves lunch from 11:15 to 13:15 on weekdays.",
            "A subsidised lunch costs 72 NOK and is paid with your badge at the till.",
            "Vegetarian and vegan dishes are available every day.",
            "Coffee, tea and fruit are free on every floor.",
        ],
    ),
    (
        "4. Parking, bicycles and electric cars",
        [
            "The basement garage has 38 charging points for electric cars on parking level P2.",
            "Charging points are booked for at most 4 hours at a time.",
            "Secure bicycle storage is on parking level P1, next to the showers and drying room.",
            "Visitors park in the marked visitor bays at the main entrance.",
        ],
    ),
    (
        "5. Lockers and lost property",
        [
            "Day lockers are on the second floor and are opened with your badge.",
            "Lost property is kept at the reception desk for 60 days.",
            "Items that are not collected after that period are donated to charity.",
        ],
    ),
    (
        "6. Safety and emergencies",
        [
            "When the fire alarm sounds, leave the building by the nearest stairway; never use the lifts.",
            "The fire assembly point for the Oslo headquarters is the flagpole in Courtyard East.",
            "Fire wardens wear yellow vests and take the roll call at the assembly point.",
            "The facilities emergency phone number is +47 21 40 99 99 and is staffed around the clock.",
            "First-aid kits and defibrillators are located next to every lift lobby.",
        ],
    ),
    (
        "7. Reporting a facilities problem",
        [
            "Broken lights, heating problems and cleaning requests are reported in the facilities "
            "section of the ServiceDesk portal.",
            "Non-urgent requests are handled within two working days.",
            "For anything that is dangerous, such as water leaks or electrical faults, call the "
            "facilities emergency phone number instead.",
        ],
    ),
]


class GuidePDF(FPDF):
    def header(self) -> None:
        self.set_font("Helvetica", "I", 9)
        self.cell(0, 8, "Northwind Robotics - Facilities Office Guide (Oslo headquarters)",
                  new_x="LMARGIN", new_y="NEXT", align="L")
        self.ln(2)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", "I", 9)
        self.cell(0, 10, f"Page {self.page_no()}", align="C")


def make_pdf(out: Path) -> Path:
    path = out / "facilities-office-guide.pdf"
    pdf = GuidePDF(format="A4")
    pdf.set_creation_date(FIXED_DATE_UTC)
    pdf.set_title("Facilities Office Guide")
    pdf.set_author(AUTHOR)
    pdf.set_subject("Facilities guide for the Oslo headquarters")
    pdf.set_creator("examples/make_kb.py")
    pdf.set_producer("fpdf2")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_margins(20, 15, 20)

    pdf.add_page()
    pdf.set_font("Helvetica", "B", 20)
    pdf.multi_cell(0, 10, "Facilities Office Guide", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(
        0, 6,
        "This guide is written by the Facilities team of Northwind Robotics. It explains how the "
        "Oslo headquarters building works: opening hours, meeting rooms, the canteen, parking, "
        "lockers and what to do in an emergency.",
        new_x="LMARGIN", new_y="NEXT",
    )
    pdf.ln(4)

    # Sections 1-3 on page 1, 4-5 on page 2, 6-7 on page 3.
    page_breaks_before = {3, 5}
    for index, (title, sentences) in enumerate(PDF_SECTIONS):
        if index in page_breaks_before:
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 14)
        pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for sentence in sentences:
            sentence.encode("ascii")  # core fonts: ASCII only
            pdf.multi_cell(0, 6, sentence, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        pdf.ln(4)

    pdf.output(str(path))
    return path


# --------------------------------------------------------------------------
# PPTX: onboarding week one
# --------------------------------------------------------------------------
SLIDES: list[tuple[str, list[str]]] = [
    (
        "Monday: arrival and your badge",
        [
            "Your building badge is collected at the Oslo reception desk on Monday at 09:15.",
            "Bring a passport or national ID card to collect the badge.",
            "Your manager meets you at reception and shows you your team area.",
        ],
    ),
    (
        "Tuesday: security awareness training",
        [
            "The mandatory security awareness course has the course code SEC-101.",
            "SEC-101 takes about 90 minutes and is completed in the learning portal Compass.",
            "You must pass SEC-101 before the end of your first week.",
        ],
    ),
    (
        "Wednesday: meet your buddy",
        [
            "Every new employee is paired with a buddy from another team.",
            "The buddy programme lasts 6 weeks, with a lunch together every week.",
            "Ask your buddy anything: where things are, who does what, how things work.",
        ],
    ),
    (
        "Thursday: robot lab safety induction",
        [
            "The robot lab safety induction takes place in Hall C.",
            "Safety shoes and safety glasses are handed out at the induction.",
            "Nobody may enter a robot cell before completing the induction.",
        ],
    ),
    (
        "Friday: first check-in",
        [
            "You and your manager agree on your goals for the first 30 days.",
            "Please fill in the week-one feedback survey before 16:00 on Friday.",
        ],
    ),
    (
        "Who to contact",
        [
            "The onboarding coordinator is Sofie Lindqvist.",
            "You can reach Sofie Lindqvist on internal extension 2231.",
            "IT questions go to the IT helpdesk; HR questions go to your HR business partner.",
        ],
    ),
]


def make_pptx(out: Path) -> Path:
    path = out / "onboarding-week-one.pptx"
    prs = Presentation()
    props = prs.core_properties
    props.title = "Onboarding: Your First Week"
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.created = FIXED_DATE
    props.modified = FIXED_DATE
    props.revision = 1

    title_slide = prs.slides.add_slide(prs.slide_layouts[0])
    title_slide.shapes.title.text = "Welcome to Northwind Robotics: Your First Week"
    title_slide.placeholders[1].text = "Onboarding programme for new employees, People and Culture team"

    for title, bullets in SLIDES:
        slide = prs.slides.add_slide(prs.slide_layouts[1])  # Title and Content
        slide.shapes.title.text = title
        body = slide.placeholders[1].text_frame
        body.text = bullets[0]
        for bullet in bullets[1:]:
            para = body.add_paragraph()
            para.text = bullet
        for para in body.paragraphs:
            for run in para.runs:
                run.font.size = PptPt(20)

    prs.save(path)
    normalize_zip(path)
    return path


# --------------------------------------------------------------------------
# XLSX: IT equipment catalog
# --------------------------------------------------------------------------
XLSX_HEADER = (
    "Item code", "Item", "Model", "Standard for", "Price (EUR)",
    "Lead time (working days)", "Approval needed from",
)
XLSX_ROWS = [
    ("HW-101", "Standard laptop", "Arcbook 14", "All office staff", 1290, 5, "Line manager"),
    ("HW-102", "Performance laptop", "Arcbook 16 Pro", "Software and robotics engineers", 2340, 7, "Line manager"),
    ("HW-103", "Engineering workstation", "Forge T7 tower", "Robot simulation and CAD", 4980, 15, "Department director"),
    ("HW-104", "Ultrawide monitor", "Vista 34W", "All office staff", 615, 4, "None"),
    ("HW-105", "Docking station", "Dockline U4", "All laptop users", 189, 3, "None"),
    ("HW-106", "Noise-cancelling headset", "Quietline H2", "All office staff", 149, 3, "None"),
    ("HW-107", "Keyboard and mouse set", "Typecraft Duo", "All office staff", 79, 2, "None"),
    ("HW-108", "Mobile phone", "Pulse 8", "Staff on call or travelling", 730, 6, "Line manager"),
    ("HW-109", "Mobile hotspot", "Roam 5G", "Field service engineers", 265, 6, "Line manager"),
    ("HW-110", "Rugged tablet", "Slate 11R", "Robot lab and field service", 1115, 9, "Line manager"),
    ("HW-111", "Webcam", "ClearView 4K", "Remote workers", 99, 2, "None"),
    ("HW-112", "Label printer", "TagJet 300", "Robot lab", 330, 10, "Lab manager"),
    ("HW-113", "Standing desk converter", "LiftDesk Mini", "Staff with an ergonomic assessment", 410, 12, "HR business partner"),
]


def make_xlsx(out: Path) -> Path:
    path = out / "it-equipment-catalog.xlsx"
    wb = Workbook()
    wb.properties.title = "IT Equipment Catalog"
    wb.properties.creator = AUTHOR
    wb.properties.lastModifiedBy = AUTHOR
    wb.properties.created = FIXED_DATE
    wb.properties.modified = FIXED_DATE

    ws = wb.active
    ws.title = "Equipment"
    ws.append(XLSX_HEADER)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in XLSX_ROWS:
        ws.append(row)
    ws.freeze_panes = "A2"
    widths = (11, 26, 17, 36, 12, 24, 22)
    for col, width in zip("ABCDEFG", widths, strict=True):
        ws.column_dimensions[col].width = width

    wb.save(path)
    normalize_zip(path)
    return path


# --------------------------------------------------------------------------
# EML: password rotation announcement
# --------------------------------------------------------------------------
EML_BODY = """\
Hello everyone,

As a result of this year's security audit, every Northwind Robotics employee
must change their Northwind account password.

What you need to do:

- Change your password before 17:00 CET on Friday 14 March 2025.
- Change it on the self-service password portal at passwords.northwind-robotics.example.
- Your new password cannot reuse any of your last 12 passwords.

What happens if you miss the deadline:

Accounts that have not changed their password by the deadline will be
suspended. To reactivate a suspended account, open a ServiceDesk ticket with
the ticket code PWD-911.

Need help?

IT runs a drop-in help session in meeting room Fjord 2 on Wednesday
12 March 2025 from 10:00 to 12:00. Bring your laptop and your phone.

Thank you for helping us keep Northwind Robotics safe.

Best regards,
Tomas Brekke
IT Operations, Northwind Robotics
"""


def make_eml(out: Path) -> Path:
    path = out / "announcement-password-rotation.eml"
    msg = EmailMessage()
    msg["From"] = "Tomas Brekke <tomas.brekke@northwind-robotics.example>"
    msg["To"] = "All Staff <all-staff@northwind-robotics.example>"
    msg["Subject"] = "Action required: change your password before 14 March 2025"
    msg["Date"] = "Mon, 03 Mar 2025 08:30:00 +0100"
    msg["Message-ID"] = "<password-rotation-2025@northwind-robotics.example>"
    msg.set_content(EML_BODY, charset="us-ascii", cte="7bit")
    path.write_bytes(msg.as_bytes(policy=default_policy))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "kb",
        help="output folder (default: examples/kb next to this script)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for make in (make_docx, make_pdf, make_pptx, make_xlsx, make_eml):
        path = make(args.out)
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
