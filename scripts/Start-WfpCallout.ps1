<#
.SYNOPSIS
    Starts the installed wfpcallout driver (`sc.exe start WfpCallout`).

.DESCRIPTION
    The driver registers its callouts and adopts filters that already name
    them. Explains the usual failures (signature, blocked load).

.EXAMPLE
    .\Start-WfpCallout.ps1
#>
[CmdletBinding(SupportsShouldProcess)]
param()

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'WfpCallout.Common.ps1')

Assert-Administrator
if ($PSCmdlet.ShouldProcess($script:ServiceName, 'start')) {
    Start-WfpCalloutService
}
